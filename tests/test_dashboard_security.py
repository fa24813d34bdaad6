"""Dashboard security as an attacker meets it: copied cookies, raced guesses, replayed codes,
proxies that lie, weak passwords, and the headers every answer carries."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pyotp
import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select
from typer.testing import CliRunner

from opencaller.cli.main import app as cli
from opencaller.config import Settings, SimulatorSettings
from opencaller.dashboard.session import COOKIE, Sessions
from opencaller.domain.accounts import get_account_by_email
from opencaller.domain.clock import FakeClock
from opencaller.domain.passwords import verify_password
from opencaller.storage.tables import account_logs, accounts

from .dashboard_support import PASSWORD, Page, make_admin, new_page
from .support import Api, make_api

TOO_MANY = "Слишком много попыток"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        demo=False,
        auth_cache_s=0,
        poll_interval_s=0.05,
        simulator=SimulatorSettings(delay_s=0.02),
        trusted_proxies=["10.0.0.0/8"],
    )


@pytest.fixture
async def page(api: Api) -> AsyncIterator[Page]:
    p = new_page(api.client)
    yield p
    await p.client.aclose()


def browser(api: Api, ip: str) -> Page:
    """A browser on another address (a proxy at 10.x when ``ip`` is one)."""
    transport = httpx.ASGITransport(app=api.client._transport.app, client=(ip, 50000))  # type: ignore[attr-defined]
    return Page(httpx.AsyncClient(transport=transport, base_url="http://opencaller.test"))


async def enable_2fa(page: Page) -> tuple[str, str]:
    """Turn 2FA on; returns the secret and the first recovery code."""
    await page.get("/dashboard/security")
    r = await page.follow(await page.post("/dashboard/security/2fa/start", {}))
    found = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.text)
    assert found
    r = await page.post("/dashboard/security/2fa/enable", {"code": pyotp.TOTP(found[1]).now()})
    codes = re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", r.text)
    assert r.status_code == 200 and len(codes) == 10
    return found[1], codes[0]


# -- sessions ---------------------------------------------------------------------------------


async def test_a_cookie_copied_before_sign_out_is_refused_after_it(page: Page, api: Api) -> None:
    await page.sign_up()
    stolen = page.client.cookies[COOKIE]
    thief = new_page(api.client)
    thief.client.cookies.set(COOKIE, stolen)
    assert (await thief.get("/dashboard")).status_code == 200  # a copy works while signed in
    await page.post("/dashboard/signout", {})
    r = await thief.get("/dashboard/security")
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/signin")
    r = await thief.client.post("/dashboard/services", data={"name": "x", "csrf": thief.csrf})
    assert r.status_code in (303, 403) and "/dashboard/services/" not in r.headers.get(
        "location", ""
    )


async def test_browsers_are_listed_and_can_be_signed_out(page: Page, api: Api) -> None:
    email = await page.sign_up()
    other = browser(api, "198.51.100.9")
    assert (await other.sign_in(email)).status_code == 303
    r = await page.get("/dashboard/security")
    rows = r.text.split('id="sessions"', 1)[1].split("</table>", 1)[0]
    assert "198.51.100.9" in rows and "203.0.113.7" in rows
    assert rows.count('name="session"') == 2
    ids = re.findall(r'name="session" value="([0-9a-f]{64})"', rows)
    assert len(ids) == 2
    # end the other browser from the list (the row that is not marked "this browser")
    this_row = next(row for row in rows.split("<tr>") if "Этот браузер" in row)
    target = next(i for i in ids if i not in this_row)
    r = await page.post("/dashboard/security/sessions/end", {"session": target})
    assert r.status_code == 303
    assert (await other.get("/dashboard")).status_code == 303
    assert (await page.get("/dashboard")).status_code == 200
    # someone else's session id ends nothing
    intruder = new_page(api.client)
    await intruder.sign_up()
    await intruder.post("/dashboard/security/sessions/end", {"session": ids[0]})
    assert (await page.get("/dashboard")).status_code == 200


async def test_turning_on_2fa_signs_other_browsers_out(page: Page, api: Api) -> None:
    email = await page.sign_up()
    other = browser(api, "198.51.100.10")
    assert (await other.sign_in(email)).status_code == 303
    await enable_2fa(page)
    assert (await other.get("/dashboard")).status_code == 303
    assert (await page.get("/dashboard")).status_code == 200


# -- guessing ---------------------------------------------------------------------------------


async def test_simultaneous_wrong_passwords_are_checked_at_most_five_times(
    page: Page, api: Api
) -> None:
    email = await page.sign_up()
    await page.post("/dashboard/signout", {})
    attackers = [browser(api, "198.51.100.20") for _ in range(15)]
    for a in attackers:
        await a.get("/dashboard/signin")
    answers = await asyncio.gather(
        *(
            a.post("/dashboard/signin", {"email": email, "password": f"guess{i}"})
            for i, a in enumerate(attackers)
        )
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(400) <= 5 and statuses.count(429) >= 10, statuses
    assert all(TOO_MANY in r.text for r in answers if r.status_code == 429)
    async with api.rt.db.read() as conn:
        failed = (
            await conn.execute(
                select(account_logs.c.id).where(account_logs.c.action == "failed sign-in")
            )
        ).all()
    assert len(failed) == statuses.count(400)  # every checked guess was logged, no more


async def test_the_owner_is_not_locked_out_by_guesses_from_elsewhere(page: Page, api: Api) -> None:
    email = await page.sign_up()
    await page.post("/dashboard/signout", {})
    assert (await page.sign_in(email)).status_code == 303  # this browser is now known
    await page.post("/dashboard/signout", {})
    for n in range(12):  # from many addresses: the e-mail-wide limit trips for strangers
        await browser(api, f"198.51.100.{40 + n}").sign_in(email, "guess")
    stranger = browser(api, "198.51.100.99")
    r = await stranger.sign_in(email)
    assert r.status_code == 429 and TOO_MANY in r.text  # even with the right password
    assert (await page.sign_in(email)).status_code == 303  # the owner's browser gets in


async def test_current_password_checks_are_limited(page: Page) -> None:
    await page.sign_up()
    for _ in range(5):
        r = await page.post(
            "/dashboard/security/password",
            {"current": "guess", "password": "a fresh secret", "password2": "a fresh secret"},
        )
        assert r.status_code == 400 and "Текущий пароль неверен" in r.text
    r = await page.post(
        "/dashboard/security/password",
        {"current": PASSWORD, "password": "a fresh secret", "password2": "a fresh secret"},
    )
    assert r.status_code == 400 and TOO_MANY in r.text


# -- second factor ------------------------------------------------------------------------


async def test_a_totp_code_signs_in_once(page: Page, api: Api) -> None:
    email = await page.sign_up()
    secret, _ = await enable_2fa(page)
    await page.post("/dashboard/signout", {})
    code = pyotp.TOTP(secret).now()
    first = browser(api, "198.51.100.60")
    assert (await first.sign_in(email)).headers["location"] == "/dashboard/signin/code"
    await first.get("/dashboard/signin/code")
    assert (await first.post("/dashboard/signin/code", {"code": code})).status_code == 303
    again = browser(api, "198.51.100.61")
    assert (await again.sign_in(email)).status_code == 303
    await again.get("/dashboard/signin/code")
    r = await again.post("/dashboard/signin/code", {"code": code})
    assert r.status_code == 400 and "Неверный код" in r.text
    assert (await again.get("/dashboard")).status_code == 303


async def test_recovery_codes_work_once(page: Page, api: Api) -> None:
    email = await page.sign_up()
    _, recovery = await enable_2fa(page)
    await page.post("/dashboard/signout", {})
    for n, expected in ((70, 303), (71, 400)):
        b = browser(api, f"198.51.100.{n}")
        await b.sign_in(email)
        await b.get("/dashboard/signin/code")
        r = await b.post("/dashboard/signin/code", {"code": recovery.upper().replace("-", " ")})
        assert r.status_code == expected
    r = await b.post("/dashboard/signin/code", {"code": "nonsense"})
    assert r.status_code == 400


async def test_the_totp_secret_never_travels_in_the_cookie(page: Page, api: Api) -> None:
    await page.sign_up()
    await page.get("/dashboard/security")
    r = await page.follow(await page.post("/dashboard/security/2fa/start", {}))
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.text)
    assert secret and "<svg" in r.text and 'class="qr"' in r.text
    stored = await Sessions(api.rt).secret()
    data = URLSafeTimedSerializer(stored, salt="opencaller.dashboard.session").loads(
        page.client.cookies[COOKIE]
    )
    assert secret[1] not in repr(data)


# -- proxies and headers ------------------------------------------------------------------


async def test_secure_cookie_only_when_a_trusted_proxy_says_https(api: Api) -> None:
    proxied = browser(api, "10.1.2.3")
    r = await proxied.client.get("/dashboard/signin", headers={"X-Forwarded-Proto": "https"})
    assert "; secure" in r.headers["set-cookie"].lower()
    liar = browser(api, "198.51.100.80")
    r = await liar.client.get("/dashboard/signin", headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in r.headers["set-cookie"].lower()


async def test_csp_and_nosniff_on_pages_static_files_and_the_api(page: Page, api: Api) -> None:
    await page.sign_up()
    for path in (
        "/dashboard",
        "/dashboard/signin",
        "/static/dashboard.css",
        "/static/dashboard.js",
        "/health",
        "/v1.0/getBalance",
    ):
        r = await page.client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        if not path.startswith("/v1.0"):
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
            assert "frame-ancestors 'none'" in csp
    r = await api.client.get("/v1.0/getBalance", params=api.creds)
    assert r.headers["x-content-type-options"] == "nosniff" and r.json()["status"] is True
    # the pages really need no inline script: every <script> has a src
    html = (await page.get("/dashboard/security")).text
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert " style=" not in html


# -- passwords and e-mails --------------------------------------------------------------------


@pytest.mark.parametrize("password", ["12345678", "password", "Password1", "qwertyuiop"])
async def test_common_passwords_are_refused_in_the_dashboard(page: Page, password: str) -> None:
    await page.get("/dashboard/signup")
    r = await page.post(
        "/dashboard/signup",
        {"email": "new@example.com", "password": password, "password2": password},
    )
    assert r.status_code == 400 and "слишком распространён" in r.text


async def test_password_length_bounds(page: Page, api: Api) -> None:
    await page.get("/dashboard/signup")
    huge = "x" * 200_000
    r = await page.post(
        "/dashboard/signup", {"email": "a@example.com", "password": huge, "password2": huge}
    )
    assert r.status_code == 400 and "не длиннее 128" in r.text
    r = await page.post(
        "/dashboard/signup", {"email": "a@example.com", "password": "short", "password2": "short"}
    )
    assert r.status_code == 400 and "не короче 8" in r.text
    async with api.rt.db.read() as conn:
        assert await get_account_by_email(conn, "a@example.com") is None


@pytest.mark.parametrize(
    "email",
    ["<script>alert(1)</script>@example.com", 'a"b@example.com', "a b@example.com", "x@<b>.com"],
)
async def test_email_fields_refuse_markup(page: Page, email: str) -> None:
    await page.get("/dashboard/signup")
    r = await page.post(
        "/dashboard/signup", {"email": email, "password": PASSWORD, "password2": PASSWORD}
    )
    assert r.status_code == 400 and "Введите правильный адрес e-mail" in r.text
    assert "<script>alert" not in r.text


def test_the_cli_applies_the_same_policy(db_url: str, clock: FakeClock) -> None:
    env = {"OPENCALLER_DATABASE_URL": db_url}
    runner = CliRunner()
    r = runner.invoke(cli, ["account", "create", "cli@example.com", "--password", "12345"], env=env)
    assert r.exit_code != 0 and "at least 8" in r.output
    r = runner.invoke(
        cli, ["account", "create", "cli@example.com", "--password", "password"], env=env
    )
    assert r.exit_code != 0 and "too common" in r.output
    r = runner.invoke(
        cli, ["account", "create", "cli@example.com", "--password", PASSWORD], env=env
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["account", "password", "cli@example.com", "--password", "qwerty123"], env=env
    )
    assert r.exit_code != 0 and "too common" in r.output
    r = runner.invoke(
        cli, ["account", "password", "cli@example.com", "--password", "another good one"], env=env
    )
    assert r.exit_code == 0 and "changed" in r.output, r.output


async def test_the_cli_password_reset_signs_browsers_out(
    settings: Settings, clock: FakeClock
) -> None:
    async with make_api(settings, clock) as api:
        p = new_page(api.client)
        email = await make_admin(api.rt, "owner@example.com")
        assert (await p.sign_in(email)).status_code == 303
        r = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["account", "password", email, "--password", "new and long enough"],
            env={"OPENCALLER_DATABASE_URL": settings.database_url},
        )
        assert r.exit_code == 0, r.output
        assert (await p.get("/dashboard")).status_code == 303
        async with api.rt.db.read() as conn:
            hashed = (
                await conn.execute(
                    select(accounts.c.password_hash).where(accounts.c.email == email)
                )
            ).scalar_one()
        assert verify_password(hashed, "new and long enough")
        assert (await p.sign_in(email, "new and long enough")).status_code == 303
