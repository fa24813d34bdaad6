"""End-to-end: real headless Chromium against a real uvicorn server on a temp SQLite file.

A customer signs up, creates a service, copies its key from the page and calls the API with
it; the calls show in the log and the statistics; settings changed in the browser are obeyed
by the API; an operator tops up the balance and the customer sees it. The screenshots in
docs/screenshots/ are taken here.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from opencaller.app import create_app
from opencaller.config import Settings, SimulatorSettings
from opencaller.domain.accounts import create_account
from opencaller.domain.bootstrap import ensure_tariff
from opencaller.domain.passwords import hash_password
from opencaller.runtime import Runtime
from opencaller.storage.database import Database
from opencaller.storage.db import migrate

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Screenshots go to a temporary folder; OPENCALLER_SCREENSHOTS=docs/screenshots refreshes the
# ones in the docs (so an ordinary test run leaves the work tree clean).
SHOTS = Path(os.environ.get("OPENCALLER_SCREENSHOTS") or tempfile.gettempdir()) / (
    "" if os.environ.get("OPENCALLER_SCREENSHOTS") else "opencaller-screenshots"
)
ADMIN = "operator@example.com"
PASSWORD = "operator password"
CUSTOMER = "anna@example.com"


@dataclass
class Server:
    url: str
    db_url: str = ""

    def api(self, method: str, **params: Any) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/v1.0/{method}", params=params, timeout=10)
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body

    def wait_final(self, sid: str, key: str, uid: int) -> dict[str, Any]:
        for _ in range(500):
            info = self.api("getInfo", service_id=sid, key=key, uid=uid)
            if info.get("call_status", -1) != -1:
                return info
            time.sleep(0.02)
        raise AssertionError("the call never finished")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _make_admin(url: str) -> None:
    db = Database(url)
    try:
        now = time.time()
        tariff_id = await ensure_tariff(db, now)
        async with db.write() as conn:
            await create_account(
                conn,
                email=ADMIN,
                now=now,
                tariff_id=tariff_id,
                password_hash=hash_password(PASSWORD),
                is_admin=True,
            )
    finally:
        await db.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path_factory.mktemp('e2e')}/opencaller.db"

    def prepare() -> None:  # in a thread: Playwright's sync API owns this thread's loop
        migrate(url)
        asyncio.run(_make_admin(url))

    setup = threading.Thread(target=prepare)
    setup.start()
    setup.join()
    settings = Settings(
        database_url=url,
        demo=False,
        poll_interval_s=0.05,
        simulator=SimulatorSettings(delay_s=0.05),
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(Runtime(settings)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(500):
        if srv.started:
            break
        time.sleep(0.02)
    assert srv.started
    yield Server(f"http://127.0.0.1:{port}", url)
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def tab(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    yield page
    context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def sign_in(page: Any, email: str, password: str) -> None:
    page.goto("/dashboard/signin")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("form[action='/dashboard/signin'] button[type=submit]")
    page.wait_for_url("**/dashboard")


def test_customer_and_operator_journey(browser: Any, server: Server, tab: Any) -> None:
    expect = playwright_api.expect
    page = tab
    page.goto("/dashboard")
    page.wait_for_url("**/dashboard/signin?next=/dashboard")
    expect(page.locator("h1")).to_have_text("Войти")
    shot(page, "signin")

    # sign up
    page.click("text=Зарегистрироваться")
    page.fill("input[name=email]", CUSTOMER)
    page.fill("input[name=password]", "anna's password")
    page.fill("input[name=password2]", "anna's password")
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")
    expect(page.locator(".alert-ok")).to_contain_text("Добро пожаловать")
    expect(page.locator("#balance")).to_have_text("0.00\u00a0₽")

    # create a service and copy its key with the button
    page.fill("input[name=name]", "Online shop")
    page.fill("input[name=use_direction]", "Sign-up confirmation")
    page.click("text=Создать сервис")
    page.wait_for_url(re.compile(r".*/dashboard/services/\d+$"))
    sid = page.locator("#service-id").inner_text()
    page.click("#copy-key")
    expect(page.locator("#copy-key")).to_have_text("Скопировано")
    key = page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(r"[A-Za-z0-9]{32}", key)
    assert page.locator("#secret-key").text_content() == key
    expect(page.locator("#secret-key")).to_have_class(re.compile("masked"))  # hidden at first
    page.click("[data-reveal]")
    expect(page.locator("#secret-key")).not_to_have_class(re.compile("masked"))

    # the key works on the API; a test number is free
    first = server.api("initCall", service_id=sid, key=key, phone="79000000001", client="web")
    assert first["status"] is True
    assert server.wait_final(sid, key, first["ucaller_id"])["call_status"] == 1
    no_money = server.api("initCall", service_id=sid, key=key, phone="79161234567")
    assert no_money["code"] == 1002

    # the operator tops the balance up; the customer sees it
    operator = browser.new_context(
        viewport={"width": 1280, "height": 800}, base_url=server.url
    ).new_page()
    sign_in(operator, ADMIN, PASSWORD)
    operator.goto("/dashboard/lang/en?next=/admin/accounts")
    operator.fill("input[name=q]", "anna")
    operator.click("form[role=search] button")
    operator.click(f"text={CUSTOMER}")
    operator.fill("input[name=amount]", "150")
    operator.fill("input[name=reason]", "Invoice 2026-001")
    operator.click("#credit-form button[type=submit]")
    expect(operator.locator("#account-balance")).to_have_text("150.00\u00a0₽")
    expect(operator.locator("#account-ledger")).to_contain_text("Invoice 2026-001")
    expect(operator.locator("#account-ledger")).to_contain_text(ADMIN)
    shot(operator, "admin-account")

    page.goto("/dashboard/balance")
    expect(page.locator("#balance")).to_have_text("150.00\u00a0₽")
    expect(page.locator("#ledger")).to_contain_text("Invoice 2026-001")

    # a real (simulated) call is charged, reached, and shows in the log and the statistics
    paid = server.api("initCall", service_id=sid, key=key, phone="79161234567", client="web")
    assert paid["status"] is True
    assert server.wait_final(sid, key, paid["ucaller_id"])["call_status"] == 1
    page.goto("/dashboard/log")
    rows = page.locator("#log-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("79161234567")
    expect(rows.first).to_contain_text("Дозвонились")
    expect(rows.nth(1)).to_contain_text("TEST")
    shot(page, "log")
    # filtering swaps the results in place
    page.fill("input[name=phone]", "7900*")
    page.click("text=Найти")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("79000000001")
    assert "phone=7900" in page.url
    page.click(f"#log-table a:text('{first['ucaller_id']}')")
    expect(page.locator("h1")).to_contain_text(str(first["ucaller_id"]))
    expect(page.locator("body")).to_contain_text("телефон зазвонил")  # delivered, in Russian
    shot(page, "authorization")

    page.goto("/dashboard/stats")
    expect(page.locator("#stat-started")).to_have_text("2")
    expect(page.locator("#stat-reached")).to_have_text("1")
    expect(page.locator("#stat-not-reached")).to_have_text("0")
    expect(page.locator("#stat-conversion")).to_have_text("100.0 %")
    expect(page.locator("svg.chart rect").first).to_be_visible()
    shot(page, "stats")
    page.goto("/dashboard/balance")
    expect(page.locator("#balance")).to_have_text("149.70\u00a0₽")
    shot(page, "balance")

    # settings: Kazakhstan only, then disabled; the API obeys at once
    page.goto(f"/dashboard/services/{sid}")
    page.fill("input[name=allowed_countries]", "KZ")
    page.click("text=Сохранить настройки")
    expect(page.locator(".alert-ok")).to_have_text("Настройки сохранены.")
    expect(page.locator("input[name=allowed_countries]")).to_have_value("KZ")
    assert server.api("initCall", service_id=sid, key=key, phone="79161234568")["code"] == 9
    shot(page, "service")
    page.click("form[action$='/enabled'] button")
    expect(page.locator(".alert-ok")).to_have_text("Сервис отключён.")
    assert server.api("initCall", service_id=sid, key=key, phone="77012345678")["code"] == 4

    page.goto("/dashboard")
    shot(page, "overview")
    page.goto("/dashboard/security")
    expect(page.locator("#activity")).to_contain_text("Изменены настройки сервиса")
    shot(page, "security")

    operator.goto("/admin")
    expect(operator.locator("#top-services")).to_contain_text("Online shop")
    shot(operator, "admin-traffic")
    operator.goto("/admin/tariffs/1")
    shot(operator, "admin-tariff")
    operator.context.close()


def test_admin_pages_refuse_customers(server: Server, tab: Any) -> None:
    page = tab
    page.goto("/dashboard/signup")
    page.fill("input[name=email]", "mallory@example.com")
    page.fill("input[name=password]", "mallory's password")
    page.fill("input[name=password2]", "mallory's password")
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")
    response = page.goto("/admin/accounts")
    assert response is not None and response.status == 403
    playwright_api.expect(page.locator("h1")).to_have_text("Эта страница только для операторов.")
    response = page.goto("/dashboard/services/1")
    assert response is not None and response.status == 404


# What sticks out past the right edge of the viewport, outside a scrolling table box.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('.table-wrap') && !el.matches('.table-wrap')) continue;
    const box = el.getBoundingClientRect();
    if (box.width && box.right > width + 1) {
      out.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(box.right)}px`);
    }
  }
  return {page: document.documentElement.scrollWidth, width, out: out.slice(0, 8)};
}"""


def assert_fits(page: Any, where: str) -> None:
    found = page.evaluate(OVERFLOW_JS)
    assert found["page"] <= found["width"] and not found["out"], (where, found)


def phone_tab(browser: Any, server: Server) -> Any:
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        base_url=server.url,
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    return context.new_page()


def open_menu_and_go(page: Any, label: str) -> None:
    expect = playwright_api.expect
    expect(page.locator(".nav")).to_be_hidden()  # folded away on a phone
    page.click(".menu-button")
    expect(page.locator(".nav")).to_be_visible()
    page.click(f".nav a:text-is('{label}')")
    page.wait_for_load_state()


def test_every_page_fits_a_phone_and_the_menu_reaches_it(browser: Any, server: Server) -> None:
    expect = playwright_api.expect
    page = phone_tab(browser, server)
    page.goto("/dashboard/signup")
    assert_fits(page, "sign-up")
    page.fill("input[name=email]", "phone@example.com")
    page.fill("input[name=password]", "a phone password")
    page.fill("input[name=password2]", "a phone password")
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")
    assert_fits(page, "overview, empty")
    page.fill("input[name=name]", "Mobile app with a rather long service name")
    page.fill("input[name=use_direction]", "Sign-up confirmation")
    page.click("text=Создать сервис")
    page.wait_for_url(re.compile(r".*/dashboard/services/\d+$"))
    assert_fits(page, "service")
    sid = page.locator("#service-id").inner_text()
    key = page.locator("#secret-key").text_content()
    for phone in ("79000000001", "79000000002"):
        call = server.api("initCall", service_id=sid, key=key, phone=phone, client="phone-test")
        server.wait_final(sid, key, call["ucaller_id"])

    for label, url in (
        ("Журнал", "/dashboard/log"),
        ("Статистика", "/dashboard/stats"),
        ("Баланс", "/dashboard/balance"),
        ("Безопасность", "/dashboard/security"),
        ("Сервисы", "/dashboard"),
    ):
        open_menu_and_go(page, label)
        assert page.url.endswith(url), (label, page.url)
        assert_fits(page, label)
    page.goto("/dashboard/log")
    page.click("#log-table tbody tr a")
    expect(page.locator("h1")).to_be_visible()
    assert_fits(page, "authorization")
    shot(page, "phone-log-entry")
    page.goto("/dashboard")
    shot(page, "phone-overview")
    page.click(".menu-button")
    expect(page.locator("form[action='/dashboard/signout'] button")).to_be_in_viewport()
    shot(page, "phone-menu")
    page.click("form[action='/dashboard/signout'] button")
    page.wait_for_url("**/dashboard/signin")
    assert_fits(page, "sign-in")
    page.context.close()

    operator = phone_tab(browser, server)
    operator.goto("/dashboard/signin")
    operator.fill("input[name=email]", ADMIN)
    operator.fill("input[name=password]", PASSWORD)
    operator.click("form[action='/dashboard/signin'] button[type=submit]")
    operator.wait_for_url("**/dashboard")
    open_menu_and_go(operator, "Админка")
    assert_fits(operator, "admin traffic")
    for url in ("/admin/accounts", "/admin/tariffs", "/admin/tariffs/1"):
        operator.goto(url)
        assert_fits(operator, url)
    operator.goto("/admin/accounts")
    operator.click("#accounts tbody a:text('phone@example.com')")
    assert_fits(operator, "admin account")
    shot(operator, "phone-admin-account")
    operator.context.close()


def test_wide_tables_stay_inside_their_cards_on_a_laptop(
    browser: Any, server: Server, tab: Any
) -> None:
    sign_in(tab, ADMIN, PASSWORD)
    for url in ("/admin", "/admin/accounts", "/dashboard/stats", "/dashboard/log"):
        tab.goto(url)
        assert_fits(tab, url)


async def _customer_with_service(url: str, email: str) -> tuple[int, str]:
    """An account with a balance and one service: (service_id, key)."""
    from opencaller.domain import billing
    from opencaller.domain.accounts import create_service
    from opencaller.domain.money import to_units
    from opencaller.domain.settings import ServiceSettings

    db = Database(url)
    try:
        now = time.time()
        tariff_id = await ensure_tariff(db, now)
        async with db.write() as conn:
            aid = await create_account(
                conn,
                email=email,
                now=now,
                tariff_id=tariff_id,
                password_hash=hash_password(PASSWORD),
            )
            await billing.credit(conn, aid, to_units(100), kind="topup", now=now)
            # A new service calls only the home countries until others are opened (fraud
            # guard): this one has opened KZ, whose conversion the page shows too.
            settings = ServiceSettings(geo_restricted=True, open_countries=["KZ"])
            return await create_service(
                conn, account_id=aid, name="Conversion shop", now=now, settings=settings
            )
    finally:
        await db.close()


def test_conversion_and_status_url_in_the_browser(server: Server, tab: Any) -> None:
    """Verified ÷ initiated on the statistics page and in the log; the status URL form."""
    expect = playwright_api.expect
    page = tab
    email = "conversion@example.com"
    made: list[tuple[int, str]] = []
    worker = threading.Thread(
        target=lambda: made.append(asyncio.run(_customer_with_service(server.db_url, email)))
    )
    worker.start()
    worker.join()
    sid, key = made[0]
    sign_in(page, email, PASSWORD)

    # The status URL: a receiver on this machine is refused (the operator allowed none).
    page.goto(f"/dashboard/services/{sid}")
    page.fill("input[name=status_url]", "http://127.0.0.1:9/status")
    page.click("#status-url-form button[type=submit]")
    expect(page.locator("#status-webhooks")).to_contain_text("loopback")
    expect(page.locator("input[name=status_url]")).to_have_value("http://127.0.0.1:9/status")

    ru = server.api("initCall", service_id=sid, key=key, phone="79161230001", code="4321")
    kz = server.api("initCall", service_id=sid, key=key, phone="77012340001", code="4321")
    for body in (ru, kz):
        assert body["status"] is True, body
        server.wait_final(str(sid), key, body["ucaller_id"])
    checked = server.api("verifyCode", service_id=sid, key=key, uid=ru["ucaller_id"], code="4321")
    assert checked["status"] is True, checked

    page.goto(f"/dashboard/stats?service={sid}")
    expect(page.locator("#verify-initiated")).to_have_text("2")
    expect(page.locator("#verify-verified")).to_have_text("1")
    expect(page.locator("#verify-rate")).to_have_text("50.0 %")
    expect(page.locator("#verified-by-channel")).to_contain_text("флеш-звонок")
    by_country = page.locator("#verified-by-country tbody tr")
    expect(by_country.filter(has_text="RU")).to_contain_text("100.0 %")
    expect(by_country.filter(has_text="KZ")).to_contain_text("0.0 %")
    expect(page.locator("#verified-by-operator tbody tr").first).to_be_visible()
    page.locator("#verification-conversion").scroll_into_view_if_needed()
    shot(page, "stats-conversion")

    page.goto(f"/dashboard/log?service={sid}")
    rows = page.locator("#log-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="77012340001").locator("td.verified")).to_have_text("—")
    expect(rows.filter(has_text="79161230001").locator("td.verified")).not_to_have_text("—")
