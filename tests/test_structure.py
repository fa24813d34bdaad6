"""The shape of the code: layers that call down only, no import cycles, one writer of the ledger.

The import contracts live in pyproject.toml (``[tool.importlinter]``, readable by the
``lint-imports`` command too); this runs each of them, and checks what a contract cannot say:
cycles through a package's ``__init__``, that every top-level module has a layer, and that only
the domain writes money rows.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "opencaller"
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

CONTRACTS = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
@pytest.mark.parametrize("contract", [c["id"] for c in CONTRACTS])
def test_import_contract_is_kept(contract: str) -> None:
    run = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--contract", contract, str(PYPROJECT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _top_level_modules() -> set[str]:
    names = {p.stem for p in SRC.glob("*.py")} | {
        p.parent.name for p in SRC.glob("*/__init__.py")
    }
    return {f"opencaller.{n}" for n in names if n != "__init__"}


def test_every_top_level_module_has_its_place_in_the_layers() -> None:
    """A new module is placed on purpose; one left out of the layers would be unchecked. A
    package may be split across layers, and then each of its modules has a place."""
    (layers,) = [c for c in CONTRACTS if c["type"] == "layers"]
    placed = [m.strip() for layer in layers["layers"] for m in re.split(r"[:|]", layer)]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    standalone = {"opencaller.client"}  # the SDK: its own contract, imported by the CLI only
    tops = {".".join(m.split(".")[:2]) for m in placed}
    assert tops | standalone == _top_level_modules()
    for split in {m.rpartition(".")[0] for m in placed if m.count(".") > 1}:
        children = {
            f"{split}.{p.stem}"
            for p in (SRC.parent / split.replace(".", "/")).glob("*.py")
            if p.stem != "__init__"
        }
        assert children <= set(placed), f"{split} is split across layers: place all of it"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_imports(path: Path, module: str) -> set[str]:
    """The packages this module takes names from (``from P import x``), x being a submodule or
    not: Python runs P's ``__init__`` for it, so that is an import of P itself."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if (SRC.parent / target.replace(".", "/") / "__init__.py").exists():
                found.add(target)
    return found


def _import_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("opencaller", cache_dir=None)
    edges = {
        m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("opencaller")}
        for m in graph.modules
    }
    for path in SRC.rglob("*.py"):
        module = _module_name(path)
        edges.setdefault(module, set()).update(_package_imports(path, module) - {module})
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
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
                        out.append(sorted(component))
    return out


def test_no_import_cycles_between_modules() -> None:
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle_through_a_package() -> None:
    """What the test above would catch: ``pkg/__init__`` re-exporting a child that takes a
    sibling with ``from pkg import sibling``."""
    edges = {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b", "pkg"}, "pkg.b": set(), "other": {"pkg"}}
    assert _cycles(edges) == [["pkg", "pkg.a"]]


# Writes of the ledger table in SQLAlchemy Core or in SQL text.
LEDGER_WRITE = re.compile(
    r"\b(?:insert|update|delete)\(\s*(?:\w+\.)*ledger\b"
    r"|\bledger\.(?:insert|update|delete)\("
    r"|\b(?:insert\s+into|update|delete\s+from)\s+\"?ledger\"?\s",
    re.IGNORECASE,
)


def _ledger_writers() -> list[str]:
    domain = SRC / "domain"
    return sorted(
        str(path.relative_to(ROOT))
        for path in SRC.rglob("*.py")
        if domain not in path.parents and LEDGER_WRITE.search(path.read_text())
    )


def test_only_the_domain_writes_the_ledger() -> None:
    assert _ledger_writers() == []


@pytest.mark.parametrize(
    "text",
    [
        "await conn.execute(insert(ledger).values(amount=1))",
        "insert(tables.ledger).from_select(cols, q)",
        "ledger.insert().values(x=1)",
        "INSERT INTO ledger (account_id, amount) VALUES (1, 2)",
        'update "ledger" set amount = 0 ',
        "DELETE FROM ledger WHERE id = 1",
    ],
)
def test_a_ledger_write_is_recognised(text: str) -> None:
    assert LEDGER_WRITE.search(text)


def test_a_ledger_read_is_not_a_write() -> None:
    assert not LEDGER_WRITE.search("select(ledger).where(ledger.c.account_id == 1)")
    assert not LEDGER_WRITE.search("SELECT amount FROM ledger")


def test_the_dashboard_writes_no_table() -> None:
    """The dashboard cannot reach the tables (contract ``dashboard-no-storage``), nor write
    through SQL text."""
    dml = re.compile(r"\b(?:insert\s+into|delete\s+from|update\s+\w+\s+set)\b", re.IGNORECASE)
    sqlalchemy_dml = re.compile(r"from sqlalchemy import [^\n]*\b(?:insert|update|delete)\b")
    offenders = [
        str(path.relative_to(ROOT))
        for path in (SRC / "dashboard").rglob("*.py")
        if dml.search(path.read_text()) or sqlalchemy_dml.search(path.read_text())
    ]
    assert offenders == []
