"""Money moves through the domain's write paths only: nothing else writes ledger rows, and a
charge's ledger reason is spelled in one place."""

from __future__ import annotations

import re
from pathlib import Path

import opencaller

SRC = Path(opencaller.__file__).parent
# The modules that write ledger rows: billing (charges, credits, refunds) and the one write
# path of a new authorization with its charge, with its PostgreSQL batch statement.
LEDGER_WRITERS = {"domain/billing.py", "domain/new_authorizations.py", "domain/group_writes.py"}
LEDGER_INSERT = re.compile(r"insert\(\s*ledger\b|INSERT\s+INTO\s+ledger\b", re.IGNORECASE)


def sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text() for p in SRC.rglob("*.py")}


def test_only_the_domain_write_paths_insert_into_the_ledger() -> None:
    writers = {name for name, text in sources().items() if LEDGER_INSERT.search(text)}
    assert writers <= LEDGER_WRITERS, writers - LEDGER_WRITERS
    assert "domain/billing.py" in writers  # the pattern still finds what it looks for


def test_a_charge_reason_is_spelled_in_billing_only() -> None:
    # "flash #42": the separator appears in billing.py, which every path takes it from.
    spelled = {name for name, text in sources().items() if re.search(r"""["']\s#["']""", text)}
    assert spelled == {"domain/billing.py"}, spelled
