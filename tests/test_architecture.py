"""The structure limits of issue 23, read from the source with ``ast`` (fast: nothing is imported).

No module over MAX_MODULE_LINES lines; no function over MAX_FUNCTION_LINES lines (a typer command in
``cli/`` is counted from its body: its signature is option declarations); no import cycle among the
project's modules; libraries never import typer or rich.

The allow-lists name offenders that another piece of work is removing right now. They may only
shrink: an entry that no longer offends fails the test, so that it is taken out.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
UI_LIBRARIES = ("typer", "rich")
NOT_SHIPPED = ("tests", "benchmarks", "scripts")

# module path -> the work removing it
LONG_MODULES_ALLOWED: dict[str, str] = {}
# "path:function" -> the work removing it
LONG_FUNCTIONS_ALLOWED: dict[str, str] = {}
# frozenset of the modules in a cycle -> the work breaking it
CYCLES_ALLOWED: dict[frozenset[str], str] = {}


@cache
def packages() -> tuple[str, ...]:
    """The project's top-level packages: every folder of the repository with an __init__.py that ships."""
    return tuple(sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in NOT_SHIPPED))


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of every package."""
    found = {}
    for package in packages():
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def tree(module: str) -> ast.Module:
    return ast.parse(modules()[module].read_text(), filename=str(modules()[module]))


def relative(module: str) -> str:
    return modules()[module].relative_to(ROOT).as_posix()


def imported(module: str) -> set[str]:
    """Every module that ``module`` imports anywhere (top level or inside a function), absolute names."""
    package = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    return imports_in(tree(module), package)


def imports_in(source: ast.Module, package: str) -> set[str]:
    """The absolute names imported in ``source``, a module of ``package``; ``from a import b`` gives a and a.b."""
    names = set()
    for node in ast.walk(source):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from report import plots`
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (an edge to a name that is a module, never to its parents)."""
    known = modules()
    return {m: {n for n in imported(m) if n in known and n != m} for m in known}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def is_typer_command(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function whose parameters default to typer.Option(...) / typer.Argument(...)."""
    defaults = [*function.args.defaults, *(d for d in function.args.kw_defaults if d is not None)]
    return any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ("Option", "Argument")
        for d in defaults
    )


def function_lines(function: ast.FunctionDef | ast.AsyncFunctionDef, in_cli: bool) -> int:
    """Lines from ``def`` to the last line; a cli/ typer command from the first line of its body."""
    first = function.body[0].lineno if in_cli and is_typer_command(function) else function.lineno
    return (function.end_lineno or function.lineno) - first + 1


def long_functions() -> dict[str, int]:
    found = {}
    for module in modules():
        in_cli = module.split(".")[0] == "cli"
        for node in ast.walk(tree(module)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = function_lines(node, in_cli)
                if lines > MAX_FUNCTION_LINES:
                    found[f"{relative(module)}:{node.name}"] = lines
    return found


def check_allowed(offenders: dict, allowed: dict, what: str) -> None:
    new = {key: value for key, value in offenders.items() if key not in allowed}
    assert not new, f"{what}: {new}; split them (STYLE.md: keep functions to one screen, modules to one job)"
    gone = sorted(str(key) for key in allowed if key not in offenders)
    assert not gone, f"no longer {what}: {gone}; take them out of the allow-list in tests/test_architecture.py"


def test_no_module_is_too_long():
    lengths = {relative(m): len(p.read_text().splitlines()) for m, p in modules().items()}
    check_allowed(
        {m: n for m, n in lengths.items() if n > MAX_MODULE_LINES}, LONG_MODULES_ALLOWED, "modules over 500 lines"
    )


def test_no_function_is_too_long():
    check_allowed(long_functions(), LONG_FUNCTIONS_ALLOWED, "functions over 60 lines")


def test_no_import_cycle():
    check_allowed({c: sorted(c) for c in cycles(import_graph())}, CYCLES_ALLOWED, "import cycles")


def test_libraries_never_import_typer_or_rich():
    offenders = {
        relative(m): sorted(n for n in imported(m) if n.split(".")[0] in UI_LIBRARIES)
        for m in modules()
        if m.split(".")[0] != "cli"
    }
    offenders = {m: names for m, names in offenders.items() if names}
    assert not offenders, f"library modules import UI libraries (only cli/ may): {offenders}"


# The checks themselves, on small made-up sources: each must be able to fail.


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"} - {"e"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_typer_commands_are_counted_from_their_body():
    source = "def command(\n    x: int = typer.Option(1),\n    y: int = typer.Option(2),\n):\n    a = 1\n    return a\n"
    function = ast.parse(source).body[0]
    assert isinstance(function, ast.FunctionDef)
    assert function_lines(function, in_cli=True) == 2
    assert function_lines(function, in_cli=False) == 6


def test_imports_are_found_anywhere_and_made_absolute():
    source = ast.parse("import a.b\nfrom . import c\nfrom ..d import e\ndef f():\n    from g import h\n")
    assert imports_in(source, "p.q") == {"a.b", "p.q", "p.q.c", "p.d", "p.d.e", "g", "g.h"}
