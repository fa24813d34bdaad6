"""Money added to or taken off an account by an operator from the command line: a top-up or
a correction, each one ledger row with its actor and reason, and the balance the customer
then sees through the API."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from typer.testing import CliRunner

from opencaller.cli.main import app as cli
from opencaller.config import Settings
from opencaller.domain.clock import FakeClock
from opencaller.storage.tables import ledger

from .support import make_api


async def test_cli_top_ups_and_corrections_are_ledger_rows(
    settings: Settings, clock: FakeClock
) -> None:
    async with make_api(settings, clock, dispatch=False, balance_rub=0) as api:
        sid, key, aid = await api.new_service(balance_rub=10, email="payer@example.com")
        env = {"OPENCALLER_DATABASE_URL": settings.database_url}

        def topup(amount: str, reason: str) -> str:
            args = ["account", "topup", "--reason", reason, "--", "payer@example.com", amount]
            r = CliRunner().invoke(cli, args, env=env)
            assert r.exit_code == 0, r.output
            return r.output.strip()

        assert await asyncio.to_thread(topup, "250.5", "invoice 7") == (
            "balance of payer@example.com: 260.5"
        )
        assert await asyncio.to_thread(topup, "-0.5", "rounding") == (
            "balance of payer@example.com: 260.0"
        )
        r = await api.client.get("/v1.0/getBalance", params={"service_id": sid, "key": key})
        assert r.json()["rub_balance"] == 260
        async with api.rt.db.read() as conn:
            rows = (
                await conn.execute(
                    select(ledger.c.kind, ledger.c.amount, ledger.c.actor, ledger.c.reason)
                    .where(ledger.c.account_id == aid)
                    .order_by(ledger.c.id)
                )
            ).all()
        assert [tuple(r) for r in rows][1:] == [
            ("topup", 2_505_000, "cli", "invoice 7"),
            ("correction", -5_000, "cli", "rounding"),
        ]
