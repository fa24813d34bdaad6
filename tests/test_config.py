"""Configuration: a TOML file, environment variables over it, flags over both."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from opencaller.config import load_settings


def test_defaults_need_no_file_and_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCALLER_CONFIG", raising=False)
    s = load_settings()
    assert s.database_url == "sqlite:///./var/opencaller.db"
    assert s.provider == "simulator"
    assert s.test_numbers == ["79000000001", "79000000002"]


def test_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "opencaller.toml"
    cfg.write_text(
        'database_url = "sqlite:///from-file.db"\nport = 9000\ntest_ranges = ["7900000"]\n'
        '[simulator]\ndelay_s = 2.5\noutcomes = { "79161234567" = "busy" }\n'
    )
    monkeypatch.setenv("OPENCALLER_PORT", "9100")
    monkeypatch.setenv("OPENCALLER_SIMULATOR__DEFAULT_OUTCOME", "not_found")
    s = load_settings(cfg, host="0.0.0.0")
    assert s.database_url == "sqlite:///from-file.db"  # only in the file
    assert s.port == 9100  # the environment beats the file
    assert s.host == "0.0.0.0"  # an explicit override beats both
    assert s.test_ranges == ["7900000"]
    assert s.simulator.outcomes == {"79161234567": "busy"}
    assert s.simulator.default_outcome == "not_found"


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('provider = "simulator"\nlease_s = 7.5\n')
    monkeypatch.setenv("OPENCALLER_CONFIG", str(cfg))
    assert load_settings().lease_s == 7.5


@pytest.mark.parametrize(("value", "dispatches"), [(None, True), ("1", False), ("true", False)])
def test_no_dispatch_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, dispatches: bool
) -> None:
    """`serve --no-dispatch` reaches every API process uvicorn starts as OPENCALLER_NO_DISPATCH,
    read like any other setting by the app factory."""
    from opencaller import server

    monkeypatch.delenv("OPENCALLER_CONFIG", raising=False)
    monkeypatch.setenv("OPENCALLER_DATABASE_URL", f"sqlite:///{tmp_path}/oc.db")
    if value is None:
        monkeypatch.delenv("OPENCALLER_NO_DISPATCH", raising=False)
    else:
        monkeypatch.setenv("OPENCALLER_NO_DISPATCH", value)
    assert load_settings().no_dispatch is not dispatches
    root = logging.getLogger()  # build_app sets up this process's logging: put it back after
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    app = server.build_app()  # RequestLimits around the API's front, around Starlette
    runtime = app.app.app.state.runtime  # type: ignore[attr-defined]
    assert (runtime.dispatcher is not None) is dispatches
