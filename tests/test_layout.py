"""The package's shape: no import circles between its modules, and no module, class or
function past the size limits (docstrings included).

Imports are read with `ast`, every one of them: module level, inside functions and under
`TYPE_CHECKING`, since a function-local import that closes a circle still ties two modules
together."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "arkd_bench"
MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 400, 200, 70


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module `name` imports: `from x import y` counts as
    importing `x.y` where that is a module, else `x`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def oversize(path: Path) -> list[str]:
    """'file: what is N lines (limit L)' for the module and each class or function past its limit."""
    relative = path.relative_to(PACKAGE).as_posix()
    text = path.read_text()
    found = []
    n_lines = len(text.splitlines())
    if n_lines > MAX_MODULE:
        found.append(f"arkd_bench/{relative}: module is {n_lines} lines (limit {MAX_MODULE})")
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            size = node.end_lineno - start + 1
            if size > limit:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                found.append(f"arkd_bench/{relative}:{node.lineno}: {kind} {node.name} is {size} lines (limit {limit})")
    return found


def test_no_import_circles():
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles between modules (each: its members, then the imports among them):\n" + "\n".join(
        " <-> ".join(g) + "\n    " + ", ".join(f"{a} -> {b}" for a in g for b in sorted(graph[a]) if b in g)
        for g in found)


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_classes_and_functions_within_size_limits():
    found = [problem for path in sorted(PACKAGE.rglob("*.py")) for problem in oversize(path)]
    assert not found, "past the size limits:\n" + "\n".join(found)
