"""Conversion (verified ÷ initiated) as a first-class number: in /metrics by channel and
country, and on the dashboard per day, service, channel, country and operator, with each
authorization's verification in the log."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from opencaller.domain.accounts import set_password
from opencaller.domain.clock import FakeClock
from opencaller.domain.passwords import hash_password
from opencaller.storage.tables import accounts
from opencaller.telephony.base import InboundCall

from .dashboard_support import PASSWORD, Page, new_page
from .support import Api

RU, RU_2, KZ = "79161234567", "79161234568", "77012345678"
TEST_NUMBER = "79000000001"


def counters(text: str) -> dict[tuple[str, str, str], float]:
    """(name, channel, country) -> value of the two conversion counters."""
    out: dict[tuple[str, str, str], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in ("opencaller_authorizations_total", "opencaller_verified_total"):
                out[(s.name, s.labels["channel"], s.labels["country"])] = s.value
    return out


async def start(api: Api, phone: str, **extra: Any) -> int:
    body = await api.get("initCall", phone=phone, code="1234", **extra)
    assert body["status"] is True, body
    return int(body["ucaller_id"])


async def traffic(api: Api, clock: FakeClock) -> dict[str, int]:
    """Three real verifications started (RU flash, KZ flash, RU inbound) and a test number;
    the RU flash call and the inbound one get verified."""
    ru = await start(api, RU, unique="order-1")
    assert await start(api, RU, unique="order-1") == ru  # replayed: starts nothing new
    kz = await start(api, KZ)
    await start(api, TEST_NUMBER)
    for uid in (ru, kz):
        await api.wait_final(uid)
    assert (await api.get("verifyCode", uid=ru, code="1234"))["status"] is True
    assert (await api.get("verifyCode", uid=ru, code="1234"))["status"] is True  # again: same
    waiting = await api.get("inboundCallWaiting", phone=RU_2, callback_url="https://example.com/")
    call = InboundCall(caller=RU_2, called=waiting["confirmation_number"], at=clock.now())
    assert await api.rt.inbound.on_call(call) == waiting["ucaller_id"]
    return {"ru": ru, "kz": kz, "inbound": int(waiting["ucaller_id"])}


async def test_metrics_count_initiated_and_verified_by_channel_and_country(
    api: Api, clock: FakeClock
) -> None:
    before = counters((await api.client.get("/metrics")).text)
    await traffic(api, clock)
    after = counters((await api.client.get("/metrics")).text)

    def delta(name: str, channel: str, country: str) -> float:
        key = (f"opencaller_{name}_total", channel, country)
        return after.get(key, 0) - before.get(key, 0)

    assert delta("authorizations", "flash", "RU") == 1  # the replay and the test number: no
    assert delta("authorizations", "flash", "KZ") == 1
    assert delta("authorizations", "inbound", "RU") == 1
    assert delta("verified", "flash", "RU") == 1  # asked twice, verified once
    assert delta("verified", "flash", "KZ") == 0
    assert delta("verified", "inbound", "RU") == 1


async def own_page(api: Api) -> Page:
    """The API's customer, signed in to the dashboard."""
    async with api.rt.db.write() as conn:
        await set_password(conn, api.account_id, hash_password(PASSWORD), now=api.rt.clock.now())
        email = (
            await conn.execute(select(accounts.c.email).where(accounts.c.id == api.account_id))
        ).scalar_one()
    page = new_page(api.client)
    r = await page.sign_in(email)
    assert r.status_code == 303, r.text
    return page


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The body rows of table ``table_id`` as lists of cell texts."""
    found = re.search(rf'<table class="table" id="{table_id}">(.*?)</table>', html, re.S)
    assert found, table_id
    body = found.group(1).split("<tbody>", 1)[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    cell = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in cell.findall(r)] for r in rows]


async def test_the_dashboard_shows_conversion_and_each_verification(
    api: Api, clock: FakeClock
) -> None:
    ids = await traffic(api, clock)
    page = await own_page(api)
    await page.get("/dashboard/lang/en")
    stats = (await page.get("/dashboard/stats")).text
    assert re.search(r'id="verify-initiated">3<', stats)
    assert re.search(r'id="verify-verified">2<', stats)
    assert re.search(r'id="verify-rate">66.7 %<', stats)
    [day] = table_rows(stats, "verified-by-day")
    assert day[1:] == ["3", "2", "66.7 %"]
    [service] = table_rows(stats, "verified-by-service")
    assert service[0].startswith(f"#{api.service_id} ") and service[1:] == ["3", "2", "66.7 %"]
    channels = {r[0]: r[1:] for r in table_rows(stats, "verified-by-channel")}
    assert channels == {"flash": ["2", "1", "50.0 %"], "inbound": ["1", "1", "100.0 %"]}
    countries = {r[0]: r[1:] for r in table_rows(stats, "verified-by-country")}
    assert countries == {"RU": ["2", "2", "100.0 %"], "KZ": ["1", "0", "0.0 %"]}
    operators = table_rows(stats, "verified-by-operator")
    assert sum(int(r[1]) for r in operators) == 3 and sum(int(r[2]) for r in operators) == 2
    # The log says which authorization was verified, and when.
    log = (await page.get("/dashboard/log")).text
    verified = {int(re.sub(r"\D.*", "", r[0])): r[7] for r in table_rows(log, "log-table") if r[0]}
    assert verified[ids["kz"]] == "—"
    assert verified[ids["ru"]] != "—" and verified[ids["inbound"]] != "—"
    detail = (await page.get(f"/dashboard/authorizations/{ids['ru']}")).text
    assert re.search(r'id="verified-at">\d', detail)
