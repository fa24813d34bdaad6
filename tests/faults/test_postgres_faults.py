"""PostgreSQL in production mode: lookups with a registry, outages, a frozen server, failover.

The lookup tests run on whichever database the suite runs on. The fault tests start a private
PostgreSQL cluster (tests/faults/pg.py) so they may stop and freeze it; they run in the
PostgreSQL pass of the suite.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..live import LiveServer, start_server

DATA = Path(__file__).resolve().parents[1] / "data" / "numbering"
SRC = str(Path(__file__).resolve().parents[2] / "src")

pytestmark = pytest.mark.slow


def opencaller(*args: str, env: dict[str, str]) -> str:
    full = {**os.environ, **env, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-m", "opencaller", *args], env=full, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def burst(server: LiveServer, method: str, n: int, **params: object) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=n)
    ) as client:
        answers = await asyncio.gather(
            *(client.get(f"/v1.0/{method}", params=server.params(**params)) for _ in range(n))
        )
    return [r.json() for r in answers]


@pytest.mark.parametrize("registry", [True, False], ids=["registry", "no-registry"])
def test_lookups_on_a_fresh_node(tmp_path: Path, db_url: str, registry: bool) -> None:
    """checkPhone and a burst of getInfo on a node that has just started, with and without an
    imported registry: every answer is a success (the SRE saw code 500 on PostgreSQL)."""
    env = {
        "OPENCALLER_DATABASE_URL": db_url,
        "OPENCALLER_SIMULATOR__DELAY_S": "0.05",
        "OPENCALLER_POLL_INTERVAL_S": "0.1",
    }
    first = start_server(tmp_path, env, name="first")
    try:
        body = httpx.get(f"{first.url}/v1.0/initCall", params=first.params(phone="79091000001"))
        uid = body.json()["ucaller_id"]
    finally:
        first.kill()
    if registry:
        out = opencaller("numbering", "import", str(DATA / "DEF-9xx.csv"), env=env)
        assert "imported" in out

    fresh = start_server(tmp_path, env, name="fresh")
    try:
        infos = asyncio.run(burst(fresh, "getInfo", 40, uid=uid))
        check = httpx.get(
            f"{fresh.url}/v1.0/checkPhone", params=fresh.params(phone="+79091100000")
        ).json()
    finally:
        fresh.kill()
    assert [i["status"] for i in infos] == [True] * 40, [i for i in infos if not i["status"]]
    operators = {i["phone_info"][0]["operator"] for i in infos}
    assert check["status"] is True, check
    if registry:
        assert operators == {'ПАО "Вымпел-Коммуникации"'}
        assert check["company"] == 'ПАО "Вымпел-Коммуникации"'
        assert check["city"] == "Пермь"
    else:
        assert operators == {"Билайн"}  # libphonenumber alone
        assert check["company"] == ""
