"""The size limits of the house (COMMON.md, DESIGN.md section 2), checked over digest/ with ``ast``:
modules <= 400 lines, functions <= 60 lines, <= 6 parameters (past that, an object). Migrations and
templates aside."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "digest"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 6

ALLOWED: dict[str, set[str]] = {"modules": set(), "functions": set()}


def _modules() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("store", "migrations") or rel.parts[0] == "templates":
            continue
        yield path


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _too_long_modules() -> list[str]:
    return [
        f"{_rel(p)}: {n} lines"
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
        and _rel(p) not in ALLOWED["modules"]
    ]


def _function_problems() -> list[str]:
    problems = []
    for path in _modules():
        if _rel(path) in ALLOWED["modules"]:
            continue
        for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{_rel(path)}:{fn.lineno} {fn.name}"
            if where.split(":")[0] + " " + fn.name in ALLOWED["functions"]:
                continue
            length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if length > MAX_FUNCTION_LINES:
                problems.append(f"{where}: {length} lines")
            if _parameters(fn) > MAX_PARAMETERS:
                problems.append(f"{where}: {_parameters(fn)} parameters")
    return problems


def test_no_module_is_longer_than_400_lines() -> None:
    assert _too_long_modules() == []


def test_no_function_is_longer_than_60_lines_or_takes_more_than_6_parameters() -> None:
    assert _function_problems() == []


def test_the_checks_see_every_module_and_would_catch_a_long_one(tmp_path: Path) -> None:
    assert len(list(_modules())) > 30
    fn = ast.parse("def f(a, b, c, d, e, f, g, *, h):\n" + "    x = 1\n" * 70)
    (node,) = list(_functions(fn))
    assert _parameters(node) == 8
    assert (node.end_lineno or 0) - node.lineno + 1 == 71
