"""The command line as a newcomer meets it: a version, a help that starts at once, and a busy
port said plainly before anything claims to be listening."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

OPENCALLER = str(Path(sys.executable).with_name("opencaller"))


def test_version() -> None:
    out = subprocess.run([OPENCALLER, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("opencaller ") and out.stdout.split()[1][0].isdigit()


def test_help_and_client_commands_load_no_database_or_server_code() -> None:
    # What makes `--help` slow is importing SQLAlchemy, Alembic, pydantic-settings and
    # libphonenumber: the CLI's modules must leave those to the commands that use them.
    probe = (
        "import sys; import opencaller.cli.main as m; "
        "heavy = [n for n in ('sqlalchemy', 'alembic', 'pydantic_settings', 'phonenumbers', "
        "'httpx', 'uvicorn', 'starlette') if n in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_busy_port_is_said_before_any_banner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "OPENCALLER_DATABASE_URL": f"sqlite:///{tmp_path}/oc.db",
            "OPENCALLER_PORT": str(port),
        }
        out = subprocess.run(
            [OPENCALLER, "serve"], capture_output=True, text=True, env=env, timeout=60
        )
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "listening" not in out.stdout and "key:" not in out.stdout
