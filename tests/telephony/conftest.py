from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .sipp import Sipp


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[Sipp]:
    """Start SIPp processes; every one is killed by PID at teardown. Fails if sipp is missing."""
    runner = Sipp(tmp_path)
    try:
        yield runner
    finally:
        runner.cleanup()
