"""The shape of app/ (README, Architecture), held by tests rather than by review.

import-linter (`make lint`, contracts in pyproject.toml) keeps the layers; these keep
what it cannot say: no import cycle between any two modules, small modules, every SQL
statement in the PostgreSQL adapter, every Redis command, key part and Lua script in
the Redis one, and the drivers named only where they must be.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
POSTGRES = APP / "infrastructure" / "postgres"
REDIS = APP / "infrastructure" / "redis"
MAX_LINES = {APP: 300, ROOT / "bench": 400}

SQL = re.compile(
    r"^\s*(SELECT\s|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|WITH\s+\w+\s+AS|"
    r"(CREATE|ALTER|DROP|TRUNCATE)\s)"
)
# Key parts of the read model's Redis layout (infrastructure/redis/keys.py): the list
# indexes' names ("ix:", "tx:") are the read model's schema, in app/queries/views.py.
KEY_PART = re.compile(r"^(:(gen|cp|ver|building|rebuild)|v:|cp|ver)$")
INDEX_NAME = re.compile(r"^(ix|tx):")


def _modules(folder: Path) -> Iterator[Path]:
    """The project's own modules (not caches, nor the bench's installed references)."""
    for path in sorted(folder.rglob("*.py")):
        inside = path.relative_to(folder).parts[:-1]
        if not any(part.startswith((".", "__pycache__")) for part in inside):
            yield path


def _strings(path: Path) -> Iterator[tuple[int, str]]:
    """Every string constant of a module, f-string parts included (not docstrings)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.lineno, node.value


def _within(path: Path, folder: Path) -> bool:
    return folder in path.parents


def test_no_import_cycle_between_any_modules_of_app() -> None:
    graph = grimp.build_graph("app")
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    # Tarjan's strongly connected components: a component of more than one module is
    # a cycle (a package and its own __init__ count as one module here).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("folder", sorted(MAX_LINES), ids=lambda p: p.name)
def test_no_module_is_large(folder: Path) -> None:
    limit = MAX_LINES[folder]
    large = {
        str(p.relative_to(ROOT)): n
        for p in _modules(folder)
        if (n := len(p.read_text().splitlines())) > limit
    }
    assert large == {}, f"over {limit} lines"


def test_every_sql_statement_is_in_the_postgres_adapter() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in _modules(APP)
        if not _within(p, POSTGRES)
        for line, text in _strings(p)
        if SQL.match(text)
    ]
    assert found == []


def test_redis_key_parts_and_lua_are_in_the_redis_adapter() -> None:
    views = APP / "queries" / "views.py"
    found = [
        f"{p.relative_to(ROOT)}:{line}: {text!r}"
        for p in _modules(APP)
        if not _within(p, REDIS)
        for line, text in _strings(p)
        if KEY_PART.match(text) or (INDEX_NAME.match(text) and p != views) or "redis.call" in text
    ]
    assert found == []
    in_python = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in _modules(REDIS)
        for line, text in _strings(p)
        if "redis.call" in text
    ]
    assert in_python == [], "Lua belongs in lua/*.lua"


def test_every_lua_script_is_registered_by_name() -> None:
    scripts = {p.stem for p in (REDIS / "lua").glob("*.lua")}
    registered = {
        match
        for p in _modules(REDIS)
        for match in re.findall(r"scripts\.register\(\w+, \"(\w+)\"\)", p.read_text())
    }
    assert registered == scripts


def test_the_drivers_are_named_only_by_their_adapters() -> None:
    graph = grimp.build_graph("app", include_external_packages=True)
    # The composition root holds the Redis client it builds; problems.py is the one
    # place where exceptions (the drivers' among them) become HTTP answers.
    allowed = {
        "asyncpg": ("app.infrastructure.postgres", "app.api.problems"),
        "redis": ("app.infrastructure.redis", "app.bootstrap", "app.api.problems"),
    }
    naming = {
        driver: sorted(
            m for m in graph.find_modules_that_directly_import(driver) if not m.startswith(places)
        )
        for driver, places in allowed.items()
    }
    assert naming == {driver: [] for driver in allowed}
