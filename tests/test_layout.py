"""The tree's shape (issue 18): no import cycle, packages layered (the contract at the bottom,
``emu`` and ``accel`` free of the quantizer), no source or document file over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contract", "asd", "emu", "programs", "accel", "asd_cli", "benchmarks", "zoo",
            "scripts")
# What each library package may import from the project (the CLI, benchmarks and scripts sit on
# top and may import anything).
ALLOWED = {
    "contract": set(),
    "asd": {"contract"},
    "emu": {"contract"},
    "accel": {"contract", "emu"},
    "programs": {"contract", "asd", "emu"},
}
MAX_LINES = 500


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per module, the project modules it imports at module level, and inside functions
    (imports under ``if TYPE_CHECKING:`` are left out: they never run)."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    top: dict[str, set[str]] = {m: set() for m in mods}
    lazy: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]

        def visit(node: ast.AST, in_function: bool, mod: str = mod, package: str = package
                  ) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                names: list[str] = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[:len(package.split(".")) - child.level + 1]
                        base = ".".join([*up, *([base] if base else [])])
                    names = [f"{base}.{a.name}" for a in child.names]
                for name in names:
                    target = resolve(name)
                    if target and target != mod:
                        (lazy if in_function else top)[mod].add(target)
                visit(child, in_function or isinstance(child, (ast.FunctionDef,
                                                                 ast.AsyncFunctionDef)))

        visit(ast.parse(path.read_text()), False)
    return top, lazy


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = {stack.pop()}
            while v not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.add(frozenset(component))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == {frozenset("abc")}


def test_no_import_cycle() -> None:
    top, lazy = imports(modules())
    assert cycles(top) == set()
    both = {m: top[m] | lazy[m] for m in top}
    assert cycles(both) == set(), "import cycles through function-level imports"


def test_packages_are_layered() -> None:
    top, lazy = imports(modules())
    for mod in top:
        pkg = mod.split(".")[0]
        if pkg in ALLOWED:
            used = {t.split(".")[0] for t in top[mod] | lazy[mod]} - {pkg}
            assert used <= ALLOWED[pkg], f"{mod} imports {sorted(used - ALLOWED[pkg])}"


def test_no_file_over_500_lines() -> None:
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "tests").glob("*.py"),
             *modules().values()]
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"over {MAX_LINES} lines: {long}"


def test_no_test_module_imports_another() -> None:
    """Shared fixtures live in tests' helper modules (helpers, rtl_cases, pe_sim, host_models,
    strategies...), so running or editing one test file never runs or breaks another's."""
    found = []
    for p in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{p.name}: {n}" for n in names if n.startswith("tests.test_")]
    assert found == []
