"""Helpers the backends share: JSON schema -> llama.cpp grammar (GBNF), a validator for the subset of JSON
Schema edged's tasks use, and OpenAI-style logprobs -> ``Token``.

Nothing here imports llama_cpp at module level: ``schema_to_gbnf`` imports llama-cpp-python's pure-Python
schema converter when it is first called, so ``openai_http`` and ``tensorrt_llm`` work without it.

Why not plain ``LlamaGrammar.from_json_schema``: llama-cpp-python's converter (0.3.x)

- ignores ``minimum``/``maximum`` on integers, so ``severity`` 0-5 could come out as 7;
- turns ``"type": ["string", "null"]`` into a bare string-or-null and drops ``maxLength``, so a nullable
  field would be unbounded (a 135M model then loops until ``max_tokens``);
- lets raw control characters (a newline) into strings, which ``json.loads`` rejects.

``schema_to_gbnf`` fixes these by rewriting the schema first (small integer ranges become enums, type lists
become ``anyOf`` branches that keep their constraints) and tightening the ``char`` rule afterwards. What
the grammar still cannot express (``minimum``/``maximum`` on numbers, wide integer ranges) is checked after
decoding with ``validate``; the backends raise BackendError when the output does not validate.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, Iterable

from edged.backends.base import Token

# Integer ranges up to this many values become an enum in the grammar (exact); wider ones are checked after.
MAX_INT_ENUM = 256

# JSON string characters without raw control characters (RFC 8259 forbids U+0000-U+001F unescaped).
_CHAR_RULE = r'[^"\\\x00-\x1F\x7F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'


def schema_key(schema: dict[str, Any]) -> str:
    """A canonical string for a schema (cache key). Property order matters to the grammar, so keep it."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def rewrite_schema(schema: Any) -> Any:
    """The schema with the constructs the converter mishandles rewritten into ones it handles."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = rewrite_schema(out[key])
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [rewrite_schema(sub) for sub in out[key]]
    for key in ("properties", "$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {name: rewrite_schema(sub) for name, sub in out[key].items()}
    types = out.get("type")
    if isinstance(types, list) and ("enum" in out or "const" in out):
        del out["type"]  # the converter checks a type list before enum/const and would drop them
    elif isinstance(types, list):
        rest = {k: v for k, v in out.items() if k != "type"}
        branches = []
        for t in types:
            branch = {"type": t}
            if t != "null":  # keep the constraints that apply to this type (maxLength, properties, ...)
                branch.update({k: v for k, v in rest.items() if k not in ("description", "title", "default")})
            branches.append(rewrite_schema(branch))
        return {"anyOf": branches}
    if out.get("type") == "integer" and "enum" not in out:
        lo, hi = _int_bounds(out)
        if lo is not None and hi is not None and 0 <= hi - lo < MAX_INT_ENUM:
            return {"enum": list(range(lo, hi + 1))}
    return out


def _int_bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    lo = hi = None
    if "minimum" in schema:
        lo = math.ceil(schema["minimum"])
    if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
        lo = max(lo if lo is not None else -math.inf, math.floor(schema["exclusiveMinimum"]) + 1)
    if "maximum" in schema:
        hi = math.floor(schema["maximum"])
    if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
        hi = min(hi if hi is not None else math.inf, math.ceil(schema["exclusiveMaximum"]) - 1)
    return (int(lo) if lo is not None else None), (int(hi) if hi is not None else None)


@lru_cache(maxsize=64)
def _gbnf_cached(key: str) -> str:
    from llama_cpp.llama_grammar import SchemaConverter

    schema = rewrite_schema(json.loads(key))
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(schema, "schema")
    converter.visit(schema, "")
    if "char" in converter._rules:
        converter._rules["char"] = _CHAR_RULE
    return converter.format_grammar()


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF text for ``schema`` (cached per schema; converting costs ~0.5 ms on 2 cores). Raises ValueError if the
    converter does not support the schema."""
    try:
        return _gbnf_cached(schema_key(schema))
    except (AssertionError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"cannot build a grammar from the schema: {exc}") from exc


# --- validation ------------------------------------------------------------------------------------------

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Errors of ``value`` against the subset of JSON Schema edged uses (type incl. lists, enum, const,
    minimum/maximum (+exclusive), minLength/maxLength, properties, required, additionalProperties,
    items, minItems/maxItems, anyOf/oneOf). [] when it validates. Keywords outside the subset are ignored."""
    errors: list[str] = []
    if not isinstance(schema, dict) or not schema:
        return errors
    for key in ("anyOf", "oneOf"):
        if key in schema:
            results = [validate(value, sub, path) for sub in schema[key]]
            ok = sum(1 for r in results if not r)
            if ok == 0 or (key == "oneOf" and ok > 1):
                errors.append(f"{path}: matches {ok} of the {key} branches")
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_TYPES.get(t, lambda v: True)(value) for t in names):
            return errors + [f"{path}: {value!r} is not of type {types}"]
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and not _json_equal(value, schema["const"]):
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: {value} <= exclusiveMinimum {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errors.append(f"{path}: {value} >= exclusiveMaximum {schema['exclusiveMaximum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: length {len(value)} > maxLength {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: length {len(value)} < minLength {schema['minLength']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}: missing required property {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                errors += validate(item, props[name], f"{path}.{name}")
            elif extra is False:
                errors.append(f"{path}: unexpected property {name!r}")
            elif isinstance(extra, dict):
                errors += validate(item, extra, f"{path}.{name}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: {len(value)} items > maxItems {schema['maxItems']}")
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: {len(value)} items < minItems {schema['minItems']}")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def check_output(text: str, schema: dict[str, Any]) -> str | None:
    """Why ``text`` is not a JSON document valid against ``schema``, or None when it is."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return f"not JSON ({exc}): {text[:200]!r}"
    errors = validate(doc, schema)
    return "; ".join(errors[:5]) if errors else None


# --- OpenAI logprobs ---------------------------------------------------------------------------------------


def tokens_from_openai(content: Iterable[dict[str, Any]] | None, top_k: int) -> list[Token]:
    """``choices[0].logprobs.content`` of an OpenAI chat completion -> Tokens ([] when absent), with at most
    ``top_k`` alternatives each, most likely first (llama-cpp-python's server adds the chosen token as a
    k+1-th alternative when it is not among the top k)."""
    tokens: list[Token] = []
    for item in content or []:
        if not isinstance(item, dict) or "token" not in item:
            continue
        alts = [
            (str(alt["token"]), float(alt["logprob"]))
            for alt in item.get("top_logprobs") or []
            if isinstance(alt, dict) and "token" in alt and alt.get("logprob") is not None
        ]
        top: dict[str, float] = {}
        for text, value in sorted(alts, key=lambda a: -a[1]):
            if len(top) >= top_k:
                break
            top.setdefault(text, value)
        logprob = item.get("logprob")
        tokens.append(Token(str(item["token"]), float(logprob) if logprob is not None else -math.inf, top))
    return tokens
