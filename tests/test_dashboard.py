"""The dashboard over HTTP (in-process): sign-in, CSRF, ownership, throttling, CSV, admin."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from opencaller.config import Settings, SimulatorSettings
from opencaller.dashboard import i18n
from opencaller.dashboard.fmt import day
from opencaller.dashboard.ru import RU
from opencaller.domain import billing
from opencaller.domain.accounts import get_account_by_email
from opencaller.domain.money import to_units
from opencaller.storage.dashboard_tables import dashboard_kv
from opencaller.storage.tables import account_logs, ledger, services

from .dashboard_support import PASSWORD, Page, make_admin, new_page
from .support import Api

BUSY_PHONE = "79161230000"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        demo=False,
        auth_cache_s=60,  # long on purpose: dashboard changes must drop the cached service
        poll_interval_s=0.05,
        simulator=SimulatorSettings(delay_s=0.02, outcomes={BUSY_PHONE: "busy"}),
    )


@pytest.fixture
async def page(api: Api) -> AsyncIterator[Page]:
    p = new_page(api.client)
    yield p
    await p.client.aclose()


async def fund(api: Api, email: str, rub: float) -> int:
    async with api.rt.db.write() as conn:
        account = await get_account_by_email(conn, email)
        assert account is not None
        await billing.credit(conn, account.id, to_units(rub), kind="topup", now=api.rt.clock.now())
        return account.id


async def service_key(page: Page, sid: int) -> str:
    r = await page.get(f"/dashboard/services/{sid}")
    found = re.search(r'id="secret-key"[^>]*>([A-Za-z0-9]{32})<', r.text)
    assert found, r.text
    return found.group(1)


async def call(api: Api, sid: int, key: str, **params: Any) -> dict[str, Any]:
    r = await api.client.get("/v1.0/initCall", params={"service_id": sid, "key": key, **params})
    body: dict[str, Any] = r.json()
    return body


async def wait_done(api: Api, sid: int, key: str, uid: int) -> dict[str, Any]:
    for _ in range(500):
        r = await api.client.get(
            "/v1.0/getInfo", params={"service_id": sid, "key": key, "uid": uid}
        )
        info: dict[str, Any] = r.json()
        if info.get("call_status", -1) != -1:
            return info
        await asyncio.sleep(0.02)
    raise AssertionError("the call never finished")


def text_of(html: str) -> str:
    return re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", html))


# -- accounts and sessions ----------------------------------------------------------------


async def test_sign_up_sign_in_and_out(page: Page, api: Api) -> None:
    email = await page.sign_up()
    r = await page.get("/dashboard")
    assert r.status_code == 200 and email in r.text
    assert "Сервисы" in r.text  # Russian by default
    r = await page.post("/dashboard/signout", {})
    assert r.headers["location"] == "/dashboard/signin"
    r = await page.get("/dashboard")
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/signin")

    r = await page.sign_in(email, "wrong password")
    assert r.status_code == 400 and "Неверный e-mail или пароль" in r.text
    r = await page.sign_in(email)
    assert r.status_code == 303
    assert (await page.get("/dashboard")).status_code == 200
    async with api.rt.db.read() as conn:
        rows = (await conn.execute(select(account_logs.c.action, account_logs.c.ip))).all()
    actions = [r.action for r in rows]
    assert actions.count("sign-in") == 1 and "failed sign-in" in actions
    assert "account created" in actions and "sign-out" in actions
    assert {r.ip for r in rows} == {"203.0.113.7"}


async def test_duplicate_and_weak_sign_ups_are_refused(page: Page) -> None:
    email = await page.sign_up()
    other = new_page(page.client)
    await other.get("/dashboard/signup")
    r = await other.post(
        "/dashboard/signup", {"email": email, "password": PASSWORD, "password2": PASSWORD}
    )
    assert r.status_code == 400
    r = await other.post(
        "/dashboard/signup", {"email": "x@example.com", "password": "short", "password2": "short"}
    )
    assert r.status_code == 400 and "не короче 8" in r.text


async def test_session_cookie_flags_and_shared_secret(api: Api) -> None:
    p = new_page(api.client)
    r = await p.get("/dashboard/signin")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    secure = new_page(api.client)
    secure.client.base_url = "https://opencaller.test"
    r = await secure.get("/dashboard/signin")
    assert "; secure" in r.headers["set-cookie"].lower()
    async with api.rt.db.read() as conn:
        stored = (await conn.execute(select(dashboard_kv.c.value))).scalars().all()
    assert len(stored) == 1 and len(stored[0]) >= 32  # generated once, in the database


async def test_session_cookie_cannot_be_forged(page: Page) -> None:
    await page.sign_up()
    value = page.client.cookies["oc_session"]
    page.client.cookies.set("oc_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    r = await page.get("/dashboard")
    assert r.status_code == 303


async def test_password_change_signs_out_other_browsers(page: Page) -> None:
    email = await page.sign_up()
    other = new_page(page.client)
    assert (await other.sign_in(email)).status_code == 303
    await page.get("/dashboard/security")
    r = await page.post(
        "/dashboard/security/password",
        {"current": PASSWORD, "password": "a brand new one", "password2": "a brand new one"},
    )
    assert r.status_code == 303
    assert (await page.get("/dashboard")).status_code == 200
    assert (await other.get("/dashboard")).status_code == 303
    assert (await other.sign_in(email, "a brand new one")).status_code == 303


async def test_two_factor_sign_in(page: Page, api: Api) -> None:
    email = await page.sign_up()
    await page.get("/dashboard/security")
    r = await page.follow(await page.post("/dashboard/security/2fa/start", {}))
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.text)
    assert secret
    r = await page.post("/dashboard/security/2fa/enable", {"code": "000000"})
    assert r.status_code == 400
    code = pyotp.TOTP(secret.group(1)).now()
    r = await page.post("/dashboard/security/2fa/enable", {"code": code})
    # the recovery codes are shown on this answer only, so it is not a redirect
    assert r.status_code == 200 and "Двухфакторная аутентификация включена" in r.text
    assert len(re.findall(r"<li>[a-z2-9]{5}-[a-z2-9]{5}</li>", r.text)) == 10
    r = await api.client.get("/v1.0/getAccount", params=api.creds)  # another account's view
    assert r.json()["two_auth"] is False

    second = new_page(page.client)
    r = await second.sign_in(email)
    assert r.headers["location"] == "/dashboard/signin/code"
    assert (await second.get("/dashboard")).status_code == 303  # not signed in yet
    await second.get("/dashboard/signin/code")
    r = await second.post("/dashboard/signin/code", {"code": "123456"})
    assert r.status_code == 400
    r = await second.post("/dashboard/signin/code", {"code": pyotp.TOTP(secret.group(1)).now()})
    assert r.status_code == 303
    assert (await second.get("/dashboard")).status_code == 200


# -- CSRF and throttling ------------------------------------------------------------------


async def test_posts_without_the_csrf_token_are_refused(page: Page, api: Api) -> None:
    await page.sign_up()
    await page.get("/dashboard")
    r = await page.post("/dashboard/services", {"name": "Sneaky"}, csrf=False)
    assert r.status_code == 403
    r = await page.client.post("/dashboard/services", data={"name": "Sneaky", "csrf": "x" * 32})
    assert r.status_code == 403
    other = new_page(page.client)  # a token from another session is no good either
    await other.get("/dashboard/signin")
    r = await page.client.post("/dashboard/services", data={"name": "Sneaky", "csrf": other.csrf})
    assert r.status_code == 403
    r = await page.client.post("/dashboard/signin", data={"email": "a@b.cd", "password": "x"})
    assert r.status_code == 403
    async with api.rt.db.read() as conn:
        names = (await conn.execute(select(services.c.name))).scalars().all()
    assert "Sneaky" not in names
    # the header works for scripted requests
    r = await page.client.post(
        "/dashboard/services", data={"name": "Scripted"}, headers={"X-CSRF-Token": page.csrf}
    )
    assert r.status_code == 303


async def test_sign_in_is_throttled_per_email(page: Page) -> None:
    email = await page.sign_up()
    await page.post("/dashboard/signout", {})
    for _ in range(5):
        assert (await page.sign_in(email, "guess")).status_code == 400
    r = await page.sign_in(email)  # even the right password waits now
    assert r.status_code == 429 and "Слишком много" in r.text
    assert (await page.get("/dashboard")).status_code == 303


async def test_sign_in_is_throttled_per_ip(page: Page) -> None:
    email = await page.sign_up()
    await page.post("/dashboard/signout", {})
    for i in range(20):
        assert (await page.sign_in(f"nobody{i}@example.com", "guess")).status_code == 400
    assert (await page.sign_in(email)).status_code == 429


# -- ownership ----------------------------------------------------------------------------


async def test_another_accounts_data_is_not_found(api: Api, page: Page) -> None:
    owner_email = await page.sign_up()
    await fund(api, owner_email, 10)
    sid = await page.create_service("Owner's")
    key = await service_key(page, sid)
    uid = (await call(api, sid, key, phone="79000000001"))["ucaller_id"]

    intruder = new_page(page.client)
    await intruder.sign_up()
    await intruder.get("/dashboard")
    for path in (
        f"/dashboard/services/{sid}",
        f"/dashboard/authorizations/{uid}",
        f"/dashboard/log?service={sid}",
        f"/dashboard/stats?service={sid}",
    ):
        r = await intruder.get(path)
        assert r.status_code == 404, path
        assert key not in r.text and "79000000001" not in r.text
    for action, data in (
        ("settings", {"allowed_countries": "KZ", "rps_limit": "5"}),
        ("enabled", {"enabled": "0"}),
        ("archived", {"archived": "1"}),
        ("key", {}),
    ):
        r = await intruder.post(f"/dashboard/services/{sid}/{action}", data)
        assert r.status_code == 404, action
    assert (await intruder.get("/dashboard/log")).text.count("79000000001") == 0
    assert (await intruder.get("/dashboard/services/abc")).status_code == 404
    # and the owner's service is untouched
    assert await service_key(page, sid) == key
    assert (await call(api, sid, key, phone="79000000002"))["status"] is True


async def test_admin_pages_are_for_operators_only(api: Api, page: Page) -> None:
    r = await page.get("/admin")
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/signin")
    email = await page.sign_up()
    paths = ("/admin", "/admin/accounts", "/admin/tariffs", f"/admin/accounts/{api.account_id}")
    for path in paths:
        assert (await page.get(path)).status_code == 403, path
    await page.get("/dashboard")
    account_id = await fund(api, email, 1)
    r = await page.post(
        f"/admin/accounts/{account_id}/credit", {"amount": "1000", "reason": "free money"}
    )
    assert r.status_code == 403
    r = await page.post("/admin/tariffs/new", {"code": "mine", "name": "Mine"})
    assert r.status_code == 403
    async with api.rt.db.read() as conn:
        account = await get_account_by_email(conn, email)
    assert account is not None and account.balance == to_units(1)


# -- services and the API -----------------------------------------------------------------


async def test_settings_are_obeyed_by_the_api_at_once(api: Api, page: Page) -> None:
    email = await page.sign_up()
    await fund(api, email, 10)
    sid = await page.create_service()
    key = await service_key(page, sid)
    assert (await call(api, sid, key, phone="79161234501"))["status"] is True

    r = await page.post(
        f"/dashboard/services/{sid}/settings",
        {
            "allowed_countries": "kz",
            "hourly_limit": "",
            "ip_allowlist": "",
            "rps_limit": "50",
            "voice_enabled": "1",
        },
    )
    assert r.status_code == 303
    page_text = text_of((await page.get(f"/dashboard/services/{sid}")).text)
    assert "Настройки сохранены" in page_text
    assert (await call(api, sid, key, phone="79161234502"))["code"] == 9
    assert (await call(api, sid, key, phone="77012345678"))["status"] is True  # Kazakhstan

    r = await page.post(
        f"/dashboard/services/{sid}/settings",
        {"allowed_countries": "XX, RU", "rps_limit": "0", "ip_allowlist": "not-an-ip"},
    )
    assert r.status_code == 400
    assert "XX" in r.text and "not-an-ip" in r.text

    await page.post(f"/dashboard/services/{sid}/enabled", {"enabled": "0"})
    assert (await call(api, sid, key, phone="77012345679"))["code"] == 4
    await page.post(f"/dashboard/services/{sid}/enabled", {"enabled": "1"})
    await page.post(f"/dashboard/services/{sid}/key", {})
    new_key = await service_key(page, sid)
    assert new_key != key
    assert (await call(api, sid, key, phone="77012345670"))["code"] == 401
    assert (await call(api, sid, new_key, phone="77012345670"))["status"] is True
    await page.post(f"/dashboard/services/{sid}/archived", {"archived": "1"})
    assert (await call(api, sid, new_key, phone="77012345671"))["code"] == 1004

    r = await page.get("/dashboard/security")
    for action in (
        "Сервис создан",
        "Изменены настройки сервиса",
        "Сервис отключён",
        "Выпущен новый ключ",
        "Сервис в архиве",
    ):
        assert action in r.text, action


async def test_test_mode_and_ip_allow_list(api: Api, page: Page) -> None:
    await page.sign_up()
    sid = await page.create_service()
    key = await service_key(page, sid)
    await page.post(
        f"/dashboard/services/{sid}/settings",
        {"rps_limit": "50", "test_mode": "1", "ip_allowlist": "198.51.100.0/24"},
    )
    assert (await call(api, sid, key, phone="79161234503"))["code"] == 1003
    await page.post(
        f"/dashboard/services/{sid}/settings",
        {"rps_limit": "50", "test_mode": "1", "ip_allowlist": "203.0.113.0/24"},
    )
    body = await call(api, sid, key, phone="79161234503")  # free: no balance needed
    assert body["status"] is True
    r = await page.get("/dashboard/log", status="test")
    assert "79161234503" in r.text and "TEST" in r.text


# -- log, details, statistics -------------------------------------------------------------


async def test_log_filters_details_and_statistics(api: Api, page: Page) -> None:
    email = await page.sign_up()
    await fund(api, email, 10)
    sid = await page.create_service("Main")
    other_sid = await page.create_service("Second")
    key, other_key = await service_key(page, sid), await service_key(page, other_sid)
    reached = (await call(api, sid, key, phone="79161234511", client="alice"))["ucaller_id"]
    busy = (await call(api, sid, key, phone=BUSY_PHONE, unique="order-7"))["ucaller_id"]
    test = (await call(api, sid, key, phone="79000000001", mix="1"))["ucaller_id"]
    voice = (await call(api, other_sid, other_key, phone="79161234522", voice="1"))["ucaller_id"]
    for s, k, uid in (
        (sid, key, reached),
        (sid, key, busy),
        (sid, key, test),
        (other_sid, other_key, voice),
    ):
        await wait_done(api, s, k, uid)

    async def ids(**params: str) -> set[int]:
        r = await page.get("/dashboard/log", **params)
        assert r.status_code == 200
        return {int(x) for x in re.findall(r'/dashboard/authorizations/(\d+)"', r.text)}

    assert await ids() == {reached, busy, test, voice}
    assert await ids(service=str(sid)) == {reached, busy, test}
    assert await ids(phone="7916123*") == {reached, busy, voice}
    assert await ids(phone="4511") == {reached}
    assert await ids(client="ali") == {reached}
    assert await ids(unique="order-7") == {busy}
    assert await ids(status="test") == {test}
    assert await ids(status="reached") == {reached, voice}
    assert await ids(status="not_reached") == {busy}
    assert await ids(channel="voice") == {voice}
    assert await ids(channel="mix") == {test}
    today = api.rt.clock.now()
    assert await ids(**{"from": day(today), "to": day(today)}) == {reached, busy, test, voice}
    assert await ids(**{"to": day(today - 86_400)}) == set()

    r = await page.get(f"/dashboard/authorizations/{busy}")
    page_text = text_of(r.text)
    assert "занято" in page_text and "order-7" in page_text and "Не дозвонились" in page_text
    assert BUSY_PHONE in page_text

    repeat = await api.client.get(
        "/v1.0/initRepeat", params={"service_id": sid, "key": key, "uid": test}
    )
    repeat_id = repeat.json()["ucaller_id"]
    r = await page.get(f"/dashboard/authorizations/{repeat_id}")
    chain_html = r.text.split("Цепочка повторов", 1)[1]
    chain_ids = re.findall(r'/dashboard/authorizations/(\d+)"', chain_html)
    assert chain_ids == [str(test), str(repeat_id)]

    r = await page.get("/dashboard/stats")
    started = re.search(r'id="stat-started">(\d+)<', r.text)
    reached_n = re.search(r'id="stat-reached">(\d+)<', r.text)
    not_reached = re.search(r'id="stat-not-reached">(\d+)<', r.text)
    assert started and started.group(1) == "5"
    assert reached_n and reached_n.group(1) == "2"  # TEST numbers are counted apart
    assert not_reached and not_reached.group(1) == "1"
    assert "<svg" in r.text and "Main" in r.text and "Second" in r.text
    assert 'id="conversion-per-day"' in r.text and "Конверсия по дням" in r.text
    card = r.text.split('id="conversion-per-day"', 1)[1].split("</section>", 1)[0]
    assert '">100</text>' in card  # a percentage axis, whatever the bars
    assert all(float(h) <= 184 for h in re.findall(r'height="([0-9.]+)"><title>', card))
    countries = r.text.split('id="by-country"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"<td>RU</td><td class=\"num\">5</td><td class=\"num\">2</td>", countries)
    operators = r.text.split('id="by-operator"', 1)[1].split("</table>", 1)[0]
    started_per_operator = re.findall(r'<tr><td>[^<]*</td><td class="num">(\d+)</td>', operators)
    assert sum(int(n) for n in started_per_operator) == 5  # every call is under some operator
    r = await page.get("/dashboard/stats", service=str(other_sid))
    assert re.search(r'id="stat-started">1<', r.text)
    assert re.search(r'id="stat-conversion">100.0 %<', r.text)


# -- balance ------------------------------------------------------------------------------


async def test_balance_page_and_csv_export(api: Api, page: Page) -> None:
    email = await page.sign_up()
    await fund(api, email, 12.5)
    sid = await page.create_service()
    key = await service_key(page, sid)
    uid = (await call(api, sid, key, phone="79161234533"))["ucaller_id"]
    r = await page.get("/dashboard/balance")
    page_text = text_of(r.text)
    assert "12.20\u00a0₽" in page_text  # 12.50 - 0.30 for the flash call
    assert "Единый" in page_text and "0.30\u00a0₽" in page_text

    r = await page.get("/dashboard/balance.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["kind"] for row in rows] == ["charge", "topup"]
    charge, topup = rows
    assert charge["amount_rub"] == "-0.30" and charge["balance_after_rub"] == "12.20"
    assert charge["authorization_id"] == str(uid) and charge["channel"] == "flash"
    assert topup["amount_rub"] == "12.50"

    other = new_page(page.client)  # another account's CSV holds only its own rows
    await other.sign_up()
    r = await other.get("/dashboard/balance.csv")
    assert list(csv.DictReader(io.StringIO(r.text))) == []


# -- operator -----------------------------------------------------------------------------


async def test_admin_tops_up_blocks_and_prices(api: Api, page: Page) -> None:
    customer = await page.sign_up()
    admin_email = await make_admin(api.rt)
    admin = new_page(page.client)
    assert (await admin.sign_in(admin_email)).status_code == 303
    r = await admin.get("/admin/accounts", q=customer[:6])
    table = r.text.split('id="accounts"', 1)[1]
    assert customer in table and "root@example.com" not in table
    async with api.rt.db.read() as conn:
        account = await get_account_by_email(conn, customer)
    assert account is not None
    base = f"/admin/accounts/{account.id}"
    await admin.get(base)
    r = await admin.post(f"{base}/credit", {"amount": "500", "reason": ""})
    assert r.status_code == 400
    r = await admin.post(f"{base}/credit", {"amount": "500,50", "reason": "invoice 17"})
    assert r.status_code == 303
    r = await admin.post(f"{base}/credit", {"amount": "-0.5", "reason": "fix", "kind": "topup"})
    assert r.status_code == 303
    async with api.rt.db.read() as conn:
        moves = (
            await conn.execute(
                select(ledger).where(ledger.c.account_id == account.id).order_by(ledger.c.id)
            )
        ).all()
    assert [(m.kind, m.amount, m.actor, m.reason) for m in moves] == [
        ("topup", to_units("500.50"), admin_email, "invoice 17"),
        ("correction", to_units("-0.5"), admin_email, "fix"),
    ]
    assert "500.00\u00a0₽" in text_of((await page.get("/dashboard/balance")).text)

    sid = await page.create_service()
    key = await service_key(page, sid)
    await admin.get(base)
    await admin.post(f"{base}/blocked", {"blocked": "1"})
    assert (await call(api, sid, key, phone="79161234544"))["code"] == 1001
    # the block signed the customer's browsers out; signing in again shows why calls fail
    assert (await page.get("/dashboard")).status_code == 303
    assert (await page.sign_in(customer)).status_code == 303
    assert "заблокирован" in (await page.get("/dashboard")).text
    await admin.post(f"{base}/blocked", {"blocked": "0"})
    await admin.post(f"{base}/phone", {"verified": "1"})
    r = await api.client.get("/v1.0/getAccount", params={"service_id": sid, "key": key})
    assert r.json()["id"] == account.id

    await admin.get("/admin/tariffs")
    r = await admin.post("/admin/tariffs/new", {"code": "vip", "name": "VIP"})
    tariff_url = r.headers["location"]
    tid = tariff_url.rsplit("/", 1)[1]
    await admin.get(tariff_url)
    r = await admin.post(
        f"{tariff_url}/prices", {"channel": "flash", "country": "", "price": "0.1"}
    )
    assert r.status_code == 303
    r = await admin.post(
        f"{tariff_url}/prices", {"channel": "flash", "country": "kz", "price": "0.25"}
    )
    assert r.status_code == 303
    r = await admin.post(f"{tariff_url}/prices", {"channel": "fax", "country": "", "price": "1"})
    assert r.status_code == 400
    await admin.post(f"{base}/tariff", {"tariff_id": tid})
    balance_page = text_of((await page.get("/dashboard/balance")).text)
    assert "VIP" in balance_page and "0.10\u00a0₽" in balance_page and "0.25\u00a0₽" in balance_page
    assert (await call(api, sid, key, phone="79161234555"))["status"] is True
    r = await api.client.get("/v1.0/getBalance", params={"service_id": sid, "key": key})
    assert r.json()["rub_balance"] == pytest.approx(499.9)  # VIP's 0.10, not the default
    assert r.json()["tariff"] == "vip"

    r = await admin.get("/admin")
    assert r.status_code == 200 and "<svg" in r.text and customer in r.text


# -- languages ----------------------------------------------------------------------------


async def test_language_switch(page: Page) -> None:
    await page.sign_up()
    r = await page.get("/dashboard/lang/en", next="/dashboard/balance")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/balance"
    r = await page.get("/dashboard/balance")
    assert "Export CSV" in r.text and 'lang="en"' in r.text
    r = await page.get("/dashboard/lang/ru", next="https://evil.example/")
    assert r.headers["location"] == "/dashboard"
    assert "Экспорт CSV" in (await page.get("/dashboard/balance")).text


def test_every_phrase_has_a_russian_translation() -> None:
    root = Path(i18n.__file__).parent
    phrase = re.compile(r"""\bt\(\s*(["'])(.+?)\1""")
    used: set[str] = set()
    for path in [*root.glob("templates/**/*.html"), *root.glob("views/*.py")]:
        used.update(m.group(2) for m in phrase.finditer(path.read_text()))
    for path in [*root.glob("views/*.py"), root / "web.py"]:  # messages of flash and errors
        used.update(re.findall(r'(?<!")"([A-Z][^"{}\n]*[.!])"(?!")', path.read_text()))
    missing = sorted(p for p in used if p not in RU)
    assert not missing, missing
    assert len(used) > 100


async def test_configured_secret_signs_sessions(api: Api, settings: Settings) -> None:
    from itsdangerous import URLSafeTimedSerializer

    from opencaller.dashboard.session import COOKIE, Sessions
    from opencaller.runtime import Runtime

    node = Runtime(settings.model_copy(update={"secret": "s" * 40}), dispatch=False)
    try:
        assert await Sessions(node).secret() == "s" * 40
    finally:
        await node.db.close()
    p = new_page(api.client)
    await p.get("/dashboard/signin")
    stored = await Sessions(api.rt).secret()  # generated and kept in the database
    data = URLSafeTimedSerializer(stored, salt="opencaller.dashboard.session").loads(
        p.client.cookies[COOKIE]
    )
    assert data["csrf"] == p.csrf


async def test_the_api_root_is_never_redirected(api: Api) -> None:
    r = await api.client.get("/", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.json()["status"] is False
    r = await api.client.get("/static/dashboard.css")
    assert r.status_code == 200 and "text/css" in r.headers["content-type"]


def test_every_outcome_channel_and_ledger_kind_reads_in_russian() -> None:
    from opencaller.dashboard.fmt import outcome
    from opencaller.telephony.base import CallKind, Outcome

    values = [outcome(o.value) for o in Outcome] + [k.value for k in CallKind]
    values += ["inbound", "lookup", "charge", "refund", "topup", "correction"]
    missing = [v for v in values if i18n.translate("ru", v) == v]
    assert not missing, missing


async def test_log_csv_export_and_bad_dates(api: Api, page: Page) -> None:
    email = await page.sign_up()
    await fund(api, email, 10)
    sid = await page.create_service()
    key = await service_key(page, sid)
    uids = []
    for phone, client in (("79161234560", "=HYPERLINK(1)"), ("79000000001", "plain")):
        uids.append((await call(api, sid, key, phone=phone, client=client))["ucaller_id"])
    for uid in uids:
        await wait_done(api, sid, key, uid)
    r = await page.get("/dashboard/log", phone="7916*")
    assert r.status_code == 200 and 'href="/dashboard/log.csv?phone=7916%2A"' in r.text
    r = await page.get("/dashboard/log.csv", phone="7916*")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(x["ucaller_id"]) for x in rows] == [uids[0]]
    assert rows[0]["phone"] == "79161234560" and rows[0]["status"] == "reached"
    assert rows[0]["client"] == "'=HYPERLINK(1)"  # never a live formula in a spreadsheet
    assert rows[0]["cost_rub"] == "0.30" and rows[0]["channel"] == "flash"
    everything = list(csv.DictReader(io.StringIO((await page.get("/dashboard/log.csv")).text)))
    assert sorted(int(x["ucaller_id"]) for x in everything) == sorted(uids)
    # a date that is not one is said, not silently ignored
    r = await page.get("/dashboard/log", **{"from": "2026-13-40"})
    assert r.status_code == 400 and "Это не дата: «2026-13-40»" in r.text
    r = await page.get("/dashboard/log", **{"from": "2026-05-02", "to": "2026-05-01"})
    assert r.status_code == 400 and "Первый день позже последнего" in r.text
    assert (await page.get("/dashboard/log.csv", to="yesterday")).status_code == 400
    other = new_page(api.client)  # another customer's export holds none of these
    await other.sign_up()
    assert "79161234560" not in (await other.get("/dashboard/log.csv")).text
    assert (await other.get("/dashboard/log.csv", service=str(sid))).status_code == 404


async def test_low_balance_notice_with_the_customers_threshold(
    api: Api, page: Page, settings: Settings
) -> None:
    api.rt.settings.topup_instructions = "Pay by invoice: billing@operator.example"
    email = await page.sign_up()
    r = await page.get("/dashboard")
    assert 'id="low-balance"' in r.text and "API отклоняет платные звонки" in r.text
    assert "billing@operator.example" in r.text
    await fund(api, email, 100)
    r = await page.get("/dashboard")
    assert 'id="low-balance"' not in r.text  # 100 ₽ is above the default 50 ₽
    await page.get("/dashboard/balance")
    r = await page.post("/dashboard/balance/alert", {"threshold": "150"})
    assert r.status_code == 303
    r = await page.get("/dashboard/stats")  # on every page
    assert "Баланс заканчивается: 100.00\u00a0₽" in text_of(r.text)
    assert "150.00\u00a0₽ и ниже" in text_of(r.text)
    r = await page.post("/dashboard/balance/alert", {"threshold": "-1"})
    assert r.status_code == 400 and "0 или больше" in r.text
    r = await page.post("/dashboard/balance/alert", {"threshold": "0"})
    assert 'id="low-balance"' not in (await page.get("/dashboard")).text


async def test_admin_creates_an_account_and_sees_its_calls(api: Api, page: Page) -> None:
    admin_email = await make_admin(api.rt)
    assert (await page.sign_in(admin_email)).status_code == 303
    await page.get("/admin/accounts")
    r = await page.post(
        "/admin/accounts/new",
        {"email": "Shop@Example.com", "password": "12345678", "balance": "10"},
    )
    assert r.status_code == 400 and "слишком распространён" in r.text
    r = await page.post(
        "/admin/accounts/new",
        {"email": "shop@example.com", "password": "shop's own password", "balance": "25,5"},
    )
    assert r.status_code == 303
    account_url = r.headers["location"]
    r = await page.get(account_url)
    assert "Аккаунт создан" in r.text and "25.50\u00a0₽" in text_of(r.text)
    r = await page.post(
        "/admin/accounts/new", {"email": "shop@example.com", "password": "another password"}
    )
    assert r.status_code == 400 and "Аккаунт с таким e-mail уже есть" in r.text

    customer = new_page(page.client)
    assert (await customer.sign_in("shop@example.com", "shop's own password")).status_code == 303
    sid = await customer.create_service()
    key = await service_key(customer, sid)
    uid = (await call(api, sid, key, phone="79161234561"))["ucaller_id"]
    await wait_done(api, sid, key, uid)
    r = await page.get(account_url)
    calls = r.text.split('id="account-calls"', 1)[1].split("</table>", 1)[0]
    assert str(uid) in calls and "79161234561" in calls and "телефон зазвонил" in calls
