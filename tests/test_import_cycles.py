"""No import circle between nullswap's packages (module-level imports; imports inside functions are lazy on purpose).

A "package" is ``nullswap.<name>``: a subpackage (``nullswap.protectors``) or a top-level module
(``nullswap.attacks``). Imports under ``if TYPE_CHECKING:`` do not run, so they do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nullswap

ROOT = Path(nullswap.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _module_level_imports(body: list[ast.stmt]):
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _module_level_imports(block)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    # ``from nullswap import errors`` imports the submodule nullswap.errors
    return [mod] + [f"{mod}.{a.name}" for a in node.names if mod == "nullswap"]


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and parts[0] == "nullswap" else None


def package_graph() -> dict[str, set[str]]:
    """``package -> packages it imports at module level`` over every ``nullswap.*`` module."""
    known = {_unit(_module_name(p)) for p in ROOT.rglob("*.py")} - {None}
    graph: dict[str, set[str]] = {u: set() for u in known}  # type: ignore[misc]
    for path in ROOT.rglob("*.py"):
        module = _module_name(path)
        src = _unit(module)
        if src is None:  # nullswap/__init__.py: the public facade, which imports lazily
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _module_level_imports(tree.body):
            for target in _targets(module, path.name == "__init__.py", node):
                dst = _unit(target)
                if dst is not None and dst != src and dst in known:
                    graph[src].add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_packages():
    graph = package_graph()
    assert "nullswap.protectors" in graph and "nullswap.attacks" in graph["nullswap.protectors"]
    found = cycles(graph)
    detail = "; ".join(
        " <-> ".join(c) + " (" + ", ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c) + ")"
        for c in found
    )
    assert not found, f"import circles between packages: {detail}"
