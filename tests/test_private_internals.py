"""Structure: the code under src/ uses SQLAlchemy through its public API only, so a minor release
cannot break the request path (storage/hot.py once rewrote the compiler's private
``__[POSTCOMPILE_…]`` markers)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import sqlalchemy

SRC = Path(__file__).resolve().parents[1] / "src" / "opencaller"
SQLALCHEMY = Path(sqlalchemy.__file__).resolve().parent

# Row's documented API, named with an underscore so it cannot clash with a column's name.
ROW_API = {"_mapping", "_asdict", "_fields", "_t", "_tuple"}
# Documented as "an internal API ... not fully public" (docs.sqlalchemy.org, core/visitors).
INTERNAL_MODULES = {"sqlalchemy.sql.visitors"}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_names_defined(tree: ast.AST) -> set[str]:
    """Underscore names a module defines: functions, classes, variables, attributes, slots."""
    found: set[str] = set()
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = node.name
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            name = node.id
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            name = node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value  # __slots__ entries
        if name and private(name):
            found.add(name)
    return found


@cache
def sqlalchemy_private_names() -> frozenset[str]:
    """Every underscore name in SQLAlchemy's source (a regular expression: parsing all of it
    takes seconds)."""
    names: set[str] = set()
    for path in SQLALCHEMY.rglob("*.py"):
        names.update(re.findall(r"\b_[A-Za-z]\w*", path.read_text(encoding="utf-8")))
    return frozenset(names - ROW_API)


def offences(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    where = path.relative_to(SRC.parent) if path.is_relative_to(SRC.parent) else path.name
    found = [f"{where}: mentions POSTCOMPILE"] if "POSTCOMPILE" in text else []
    own = private_names_defined(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            module = node.module or ""
            if module in INTERNAL_MODULES or any(private(p) for p in module.split(".")):
                found.append(f"{where}:{node.lineno}: imports {module}")
            found += [
                f"{where}:{node.lineno}: imports {module}.{a.name}"
                for a in node.names
                if private(a.name) or f"{module}.{a.name}" in INTERNAL_MODULES
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"{where}:{node.lineno}: imports {a.name}"
                for a in node.names
                if a.name.startswith("sqlalchemy")
                and (a.name in INTERNAL_MODULES or any(private(p) for p in a.name.split(".")))
            ]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in sqlalchemy_private_names()
            and node.attr not in own  # a private name of the module itself is its own business
        ):
            found.append(f"{where}:{node.lineno}: uses SQLAlchemy's private .{node.attr}")
    return found


def test_the_checker_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from sqlalchemy.sql import visitors\n"
        "from sqlalchemy.sql.elements import _corresponding_column_or_error\n"
        "def f(compiled, row, own):\n"
        "    own._mine = 1\n"
        "    return compiled._bind_processors, row._mapping, own._mine, '__[POSTCOMPILE_x]'\n"
    )
    found = offences(sample)
    assert len(found) == 4, found
    assert "POSTCOMPILE" in found[0]
    assert any("visitors" in f for f in found)
    assert any("_corresponding_column_or_error" in f for f in found)
    assert any("._bind_processors" in f for f in found)


def test_src_uses_only_public_sqlalchemy() -> None:
    found = [o for path in sorted(SRC.rglob("*.py")) for o in offences(path)]
    assert found == []
