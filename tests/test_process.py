"""Process set-up: the malloc arena cap reaches this process and the processes it starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from opencaller.process import limit_malloc_arenas


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_arena_cap_is_taken_and_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "")  # restored to its state before the test
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas(2) is True
    assert os.environ["MALLOC_ARENA_MAX"] == "2"
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('MALLOC_ARENA_MAX'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == "2"


def test_zero_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "")  # restored to its state before the test
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas(0) is False
    assert "MALLOC_ARENA_MAX" not in os.environ
