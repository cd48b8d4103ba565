"""The architecture holds (ARCHITECTURE.md): imports run one way, and no file imports itself in a
circle. A static scan of edged/ (every import statement, also inside functions and under
``if TYPE_CHECKING``), so a forbidden import fails here before anyone runs it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edged"

# (who, what it must never import, why)
FORBIDDEN = [
    ("edged.sources", "edged.analysis", "sources store records; they never call the model"),
    ("edged.sources", "edged.backends", "sources store records; they never call the model"),
    ("edged.sources", "edged.publish", "sources store records; the publisher reads only the outbox"),
    ("edged.backends", "edged.store", "a backend answers requests; it never touches the database"),
    ("edged.backends", "edged.config.settings", "a backend gets its own Config, not the settings tree"),
    ("edged.backends", "edged.config.load", "a backend gets its own Config, not the settings tree"),
    ("edged.web", "edged.backends", "the page reads the model's view (edged.parts), never a backend"),
    ("edged.store", "edged.sources", "the store is below every part that writes to it"),
    ("edged.store", "edged.analysis", "the store is below every part that writes to it"),
    ("edged.store", "edged.publish", "the store is below every part that writes to it"),
    ("edged.teacher", "edged.store", "the teacher runs centrally with its own answer file, never a box's database"),
    ("edged.publish", "edged.sources", "the publisher and the sources share only the broker plumbing (edged.broker)"),
    ("edged.teacher", "edged.sources", "the teacher shares only the broker plumbing (edged.broker) with a box"),
] + [
    ("edged.logformats", part, "header formats are a leaf: the sources, the analysis and the CLI all use them")
    for part in ("edged.config", "edged.store", "edged.sources", "edged.analysis", "edged.triage", "edged.backends",
                 "edged.models", "edged.publish", "edged.web", "edged.app", "edged.cli")
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every edged module ``path`` names in an import (``from a import b`` counts a.b when b is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "edged" or m.startswith("edged.")}


def graph() -> dict[str, set[str]]:
    """File -> the files it imports (a name resolves to the deepest module that exists)."""
    mods = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for target in imports_of(name, path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges[name].add(target)
    return edges


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_scan_sees_the_package() -> None:
    edges = graph()
    assert len(modules()) > 50
    assert "edged.store.database" in edges["edged.app"]


def test_no_forbidden_imports() -> None:
    bad = [
        f"{source} imports {target}: {why}"
        for source, targets in sorted(graph().items())
        for target in sorted(targets)
        for who, what, why in FORBIDDEN
        if within(source, who) and within(target, what)
    ]
    assert not bad, "\n".join(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(set(edges) | {t for ts in edges.values() for t in ts}):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_between_files() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_config_loads_no_model_library() -> None:
    """Backends are registered from one list, but the library each drives is imported only when it is
    selected: loading the settings must not import llama.cpp or TensorRT."""
    import subprocess
    import sys

    code = (
        "import sys, edged.config, edged.backends;"
        "print(sorted(m for m in ('llama_cpp', 'tensorrt_llm', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
