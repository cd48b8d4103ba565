"""Noticing that generated text repeats itself, and closing a JSON document cut short.

Small models loop ("2 L of oil lost, 2 L of oil lost, ..."). A summary ends at the first repeated
word n-gram: ``first_repeat`` finds where the second occurrence starts. A backend that decodes
token by token (llama_cpp) stops there and closes the JSON document with ``close_json``; others
cut the finished answer the same way afterwards.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def first_repeat(text: str, n: int = 4) -> int | None:
    """Character offset where a word n-gram occurs for the second time (case-insensitive), or None."""
    if n < 1:
        return None
    words = [(m.group(0).casefold(), m.start()) for m in _WORD.finditer(text)]
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        gram = tuple(w for w, _ in words[i:i + n])
        if gram in seen:
            return words[i][1]
        seen.add(gram)
    return None


def cut_at_repeat(text: str, n: int = 4) -> tuple[str, bool]:
    """``text`` up to its first repeated n-gram (trailing separators dropped), and whether it was cut."""
    at = first_repeat(text, n)
    if at is None:
        return text, False
    return text[:at].rstrip(" \t\n,;:-–(/&").rstrip(), True


def close_json(prefix: str) -> str | None:
    """``prefix`` (the start of a JSON document, cut inside a string or between values) made a complete
    document by closing its open string, arrays and objects; None when it cannot be (cut after a key)."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in prefix:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    text = prefix
    if in_string:
        if escaped:
            text = text[:-1]
        # an incomplete \\uXXXX escape would not parse: drop it
        text = re.sub(r"\\u[0-9a-fA-F]{0,3}$", "", text)
        text = text.rstrip(" \t,;:-") + '"'
    stripped = text.rstrip()
    if not stripped or stripped[-1] in ":,":
        return None
    return stripped + "".join(reversed(stack))
