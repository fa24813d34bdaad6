"""The API describes itself: /openapi.json is valid OpenAPI 3.1 and matches what the server
really answers; /docs renders it with nothing from outside; schemathesis fuzzes a live server
with the document and every answer stays uCaller-shaped."""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import re
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from opencaller.domain.settings import ServiceSettings
from opencaller.errors import Code
from opencaller.storage.database import Database
from opencaller.storage.db import migrate
from opencaller.storage.tables import account_logs
from opencaller.wire.methods import METHODS

from .live import LiveServer, start_server
from .support import Api, add_customer

SUCCESS_PHONE = "79000000001"
FAIL_PHONE = "79000000002"
REDIS_URL = os.environ.get("OPENCALLER_TEST_REDIS_URL", "")


async def fetch_document(api: Api) -> dict[str, Any]:
    r = await api.client.get("/openapi.json")  # no credentials
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    return doc


def answer_validator(doc: dict[str, Any], path: str, verb: str = "get") -> Draft202012Validator:
    """Validates a body against the documented 200 answer of ``verb path``."""
    response = doc["paths"][path][verb]["responses"]["200"]
    schema = response["content"]["application/json"]["schema"]
    root = {"components": doc["components"], **schema}
    return Draft202012Validator(root, format_checker=FormatChecker())


def assert_documented(doc: dict[str, Any], path: str, body: dict[str, Any]) -> None:
    for verb in ("get", "post") if path != "/health" else ("get",):
        errors = [e.message for e in answer_validator(doc, path, verb).iter_errors(body)]
        assert not errors, f"{verb.upper()} {path}: {body} does not match: {errors}"


# -- the document -----------------------------------------------------------------------------


async def test_document_is_valid_openapi_3_1_and_covers_every_method(api: Api) -> None:
    doc = await fetch_document(api)
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)
    documented = {p.rsplit("/", 1)[-1].lower() for p in doc["paths"]}
    assert set(METHODS) | {"health"} <= documented
    for path, item in doc["paths"].items():
        verbs = {"get"} if path == "/health" else {"get", "post"}
        assert set(item) == verbs, path
    schemas = doc["components"]["schemas"]
    assert schemas["Error"]["properties"]["code"]["enum"] == [int(c) for c in Code]
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "queryKey", "queryServiceId"}
    # The document is served as is, also under the paths uCaller clients use for methods.
    assert (await api.client.get("/openapi.json")).content == (
        await api.client.get("/openapi.json", headers={"Authorization": "Bearer x.1"})
    ).content


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0
        self.inline_handlers: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "data") and value is not None:
                self.urls.append(value)
            if name.startswith("on"):
                self.inline_handlers.append(name)
            if name == "id" and value:
                self.ids.add(value)


async def test_docs_page_renders_every_operation_without_outside_resources(api: Api) -> None:
    doc = await fetch_document(api)
    r = await api.client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = _Page()
    page.feed(r.text)
    assert page.scripts == 0 and page.inline_handlers == []
    # Only our own paths and in-page anchors: nothing is loaded from another origin.
    assert page.urls and all(u.startswith(("/", "#")) and not u.startswith("//") for u in page.urls)
    for url in page.urls:
        if url.startswith("#"):
            assert url[1:] in page.ids, url
        else:
            assert (await api.client.get(url)).status_code == 200, url
    css = await api.client.get("/docs/openapi.css")
    assert css.headers["content-type"].startswith("text/css")
    assert "url(" not in css.text and "@import" not in css.text
    for path, item in doc["paths"].items():
        for op in item.values():
            assert op["operationId"] in page.ids
            assert path in r.text
            assert op["summary"] in r.text
    for name in doc["components"]["schemas"]:
        assert name in page.ids
    for field in ("ucaller_id", "call_status", "confirmation_number", "rub_balance"):
        assert f"<code>{field}</code>" in r.text
    for code in Code:
        assert f"<code>{int(code)}</code>" in r.text


# -- real answers validate --------------------------------------------------------------------


async def test_real_answers_of_every_method_match_the_document(api: Api) -> None:
    doc = await fetch_document(api)
    seen: set[str] = set()

    def check(method: str, body: dict[str, Any], *, ok: bool = True) -> dict[str, Any]:
        assert body["status"] is ok, body
        assert_documented(doc, f"/v1.0/{method}" if method != "health" else "/health", body)
        seen.add(method.lower())
        return body

    plain = check("initCall", await api.get("initCall", phone=SUCCESS_PHONE))
    assert "exists" not in plain
    check("getInfo", await api.get("getInfo", uid=plain["ucaller_id"]))  # pending
    check("getInfo", await api.wait_final(plain["ucaller_id"]))
    billed = check(
        "initCall",
        await api.post_json(
            "initCall", {"phone": 79161234567, "code": 7, "client": "nick", "unique": "u-1"}
        ),
    )
    assert billed["exists"] is False
    replay = await api.post_json("initCall", {"phone": 79161234567, "unique": "u-1"})
    assert check("initCall", replay)["exists"] is True
    info = check("getInfo", await api.wait_final(billed["ucaller_id"]))
    assert info["cost"] > 0 and info["unique"] == "u-1" and info["call_outcome"] == "delivered"
    check("initCall", await api.get("initCall", phone="79161234568", voice="true"))

    failed = await api.get("initCall", phone=FAIL_PHONE, code="4321")
    final = check("getInfo", await api.wait_final(failed["ucaller_id"]))
    assert final["call_status"] == 0
    repeat = check("initRepeat", await api.post_json("initRepeat", {"uid": failed["ucaller_id"]}))
    repeat_info = check("getInfo", await api.get("getInfo", ucaller_id=repeat["ucaller_id"]))
    assert repeat_info["first_ucaller_id"] == failed["ucaller_id"]
    root = check("getInfo", await api.get("getInfo", uid=failed["ucaller_id"]))
    assert root["repeated_ucaller_ids"] == [repeat["ucaller_id"]]

    async with api.rt.db.write() as conn:
        await conn.execute(
            insert(account_logs).values(
                account_id=api.account_id,
                action="sign-in",
                user_agent="pytest",
                ip="203.0.113.7",
                created_at=1_700_000_000.5,
            )
        )
    account = check("getAccount", await api.get("getAccount"))
    assert account["logs"][0]["created"] == 1_700_000_000
    check("getBalance", await api.get("getBalance"))
    check("getService", await api.get("getService"))
    check("checkPhone", await api.get("checkPhone", phone="+7 909 100-00-00"))
    check("checkPhone", await api.post_json("checkPhone", {"phone": SUCCESS_PHONE}))
    inbound = check(
        "inboundCallWaiting",
        await api.get(
            "inboundCallWaiting", phone="+79161234567", callback_url="https://example.com/hook"
        ),
    )
    assert "code" not in check("getInfo", await api.get("getInfo", uid=inbound["ucaller_id"]))
    wrong = check(
        "verifyCode", await api.get("verifyCode", uid=plain["ucaller_id"], code="1"), ok=False
    )
    assert wrong["code"] == 60 and wrong["attempts_left"] == 4
    right = await api.get("verifyCode", uid=plain["ucaller_id"], code=plain["code"], unique="v-1")
    assert check("verifyCode", right)["verified"] is True
    verified = check("getInfo", await api.get("getInfo", uid=plain["ucaller_id"]))
    assert verified["verified"] is True and verified["verified_at"] == right["verified_at"]
    check("health", (await api.client.get("/health")).json())
    assert seen == set(METHODS) | {"health"}

    # Errors are documented under every method.
    errors = {
        "initCall": await api.get("initCall", phone="12"),  # 3
        "getInfo": await api.get("getInfo", uid=987654),  # 10
        "initRepeat": await api.get("initRepeat"),  # 2
        "getBalance": (await api.client.get("/v1.0/getBalance", params={"key": "x"})).json(),
    }
    for method, body in errors.items():
        check(method, body, ok=False)
    assert [b["code"] for b in errors.values()] == [3, 10, 2, 401]


async def test_the_schemas_catch_a_regression(api: Api) -> None:
    """A changed type, a missing field or an error key on success fails validation."""
    doc = await fetch_document(api)
    answer = await api.get("initCall", phone=SUCCESS_PHONE, unique="k")
    info = await api.get("getInfo", uid=answer["ucaller_id"])
    assert_documented(doc, "/v1.0/initCall", answer)
    assert_documented(doc, "/v1.0/getInfo", info)
    broken: list[tuple[str, dict[str, Any]]] = [
        ("initCall", {**answer, "ucaller_id": str(answer["ucaller_id"])}),
        ("initCall", {**answer, "code": int(answer["code"])}),
        ("initCall", {**answer, "phone": "79000000001"}),
        ("initCall", {k: v for k, v in answer.items() if k != "client"}),
        ("initCall", {k: v for k, v in answer.items() if k != "exists"}),
        ("initCall", {**answer, "error": ""}),
        ("getInfo", {**info, "call_status": "-1"}),
        ("getInfo", {**info, "first_ucaller_id": info["ucaller_id"]}),
        ("getInfo", {**info, "sip_code": "200"}),
        ("getInfo", {**info, "phone_info": {}}),
        (
            "getBalance",
            {
                "status": True,
                "rub_balance": "1",
                "bonus_balance": 0,
                "tariff": "",
                "tariff_name": "",
            },
        ),
        ("getInfo", {"status": False, "error": "x", "code": "10"}),
        ("getInfo", {"status": False, "error": "x", "code": 777}),
        ("getInfo", {"status": False, "code": 10}),
    ]
    for method, body in broken:
        validator = answer_validator(doc, f"/v1.0/{method}")
        assert not validator.is_valid(copy.deepcopy(body)), (method, body)


# -- schemathesis against a live server -------------------------------------------------------


def _customer(db_url: str) -> tuple[int, str]:
    """A service with a generous balance and no per-second limit to speak of."""

    async def run() -> tuple[int, str]:
        db = Database(db_url)
        try:
            sid, key, _ = await add_customer(
                db, balance_rub=1_000_000, settings=ServiceSettings(rps_limit=100_000)
            )
        finally:
            await db.close()
        return sid, key

    return asyncio.run(run())


@pytest.fixture
def live(tmp_path: Path, db_url: str) -> Iterator[LiveServer]:
    if make_url(db_url).get_backend_name() == "sqlite":
        migrate(db_url)
    sid, key = _customer(db_url)
    env = {
        "OPENCALLER_DATABASE_URL": db_url,
        # Every number is a test number: never billed, simulated, exempt from per-number limits.
        "OPENCALLER_TEST_RANGES": '["0","1","2","3","4","5","6","7","8","9"]',
        "OPENCALLER_SIMULATOR__DELAY_S": "0.05",
        "OPENCALLER_POLL_INTERVAL_S": "0.1",
        # Each generated request comes from its own address (X-Forwarded-For), so the failed
        # authentications of some never block the IP of the others.
        "OPENCALLER_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "OPENCALLER_LOG_LEVEL": "WARNING",
    }
    if REDIS_URL:
        env["OPENCALLER_REDIS_URL"] = REDIS_URL
        env["OPENCALLER_REDIS_PREFIX"] = f"oc-test:{uuid.uuid4().hex[:12]}:"
    server = start_server(tmp_path, env)
    server.service_id, server.key = sid, key
    try:
        yield server
    finally:
        server.kill()


class LogTail:
    """What the server logged since the previous look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode(errors="replace")


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _valid_arguments(case: Any, n: int, uid: int) -> None:
    """Half the authenticated positive cases name a real number, id and webhook URL, so the
    methods get past those checks and their success answers are checked too."""
    known = {
        "phone": f"7916{n:07d}",
        "uid": str(uid),
        "ucaller_id": str(uid),
        "code": KNOWN_CODE,  # every known id's code
        # a public address literal: no name to resolve, nothing private (never called here)
        "callback_url": "https://93.184.215.14/ucaller",
    }
    for values in (case.query, case.body):
        if isinstance(values, dict):
            for name in known.keys() & values.keys():
                values[name] = known[name]


def _request_text(request: Any) -> str:
    """The request as one readable line, for the failure report."""
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    ctype = request.headers.get("Content-Type", "-")
    auth = request.headers.get("Authorization", "-")
    return (
        f"{request.method} {request.url} [Content-Type: {ctype}; Authorization: {auth!r:.80}]"
        f" body={body[:300]!r}"
    )


def _exceptions(logged: str) -> str:
    """The exception lines of the logged tracebacks: what was raised, and where in our code."""
    lines = logged.splitlines()
    keep = [
        line.strip()
        for i, line in enumerate(lines)
        if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line.strip())
        or ("/opencaller/" in line and line.strip().startswith("File"))
    ]
    return " | ".join(keep)[:1500]


def exercise(case: Any, live: LiveServer, tail: LogTail, n: int, uid: int) -> bool:
    """One generated request, and everything its answer must be; True for a success."""
    headers = {"X-Forwarded-For": f"198.18.{n // 250 % 256}.{n % 250 + 1}"}
    if n % 3:
        # Two cases in three get past authentication (the header wins over other schemes).
        case.headers = {
            **(case.headers or {}),
            "Authorization": f"Bearer {live.key}.{live.service_id}",
        }
        if n % 2 and case.meta and case.meta.generation.mode == GenerationMode.POSITIVE:
            _valid_arguments(case, n, uid)
    response = case.call(base_url=live.url, headers=headers, timeout=30)
    sent = _request_text(response.request)
    logged = tail.new()
    assert "Traceback" not in logged and "unhandled error" not in logged, (
        f"logged: {_exceptions(logged)}\n  after: {sent}"
    )
    assert response.status_code == 200, (
        f"{sent}\n  HTTP {response.status_code}: {response.text:.300}"
    )
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("status"), bool), f"{sent}\n  {body}"
    if body["status"] is False:
        assert isinstance(body.get("error"), str) and body["error"], f"{sent}\n  {body}"
        assert type(body.get("code")) is int, f"{sent}\n  {body}"
        assert body["code"] != int(Code.INTERNAL), f"{sent}\n  {body}"
    else:
        assert "error" not in body, f"{sent}\n  {body}"
    case.validate_response(response, checks=CHECKS)
    return bool(body["status"])


KNOWN_CODE = "0427"
EXAMPLES_PER_OPERATION = 8  # per generation mode, after the coverage cases


def finished_authorizations(live: LiveServer, count: int) -> list[int]:
    """Ids whose calls have ended: getInfo finds them, initRepeat may repeat each twice."""
    ids = [
        httpx.get(
            f"{live.url}/v1.0/initCall", params=live.params(phone=FAIL_PHONE, code=KNOWN_CODE)
        ).json()["ucaller_id"]
        for _ in range(count)
    ]
    for uid in ids:
        for _ in range(200):
            info = httpx.get(f"{live.url}/v1.0/getInfo", params=live.params(uid=uid)).json()
            if info["call_status"] != -1:
                break
            time.sleep(0.1)
        # verified once: the right code succeeds again however many wrong ones the fuzzer sends
        verify = live.params(uid=uid, code=KNOWN_CODE)
        assert httpx.get(f"{live.url}/v1.0/verifyCode", params=verify).json()["verified"]
    return ids


@pytest.mark.slow
def test_schemathesis_answers_stay_ucaller_shaped(live: LiveServer) -> None:
    """Generated requests (valid and invalid, every encoding) to every operation: no error 500,
    no traceback, every answer a uCaller object that matches the document.

    First schemathesis' coverage cases (boundaries, wrong types, missing and duplicated
    parameters: deterministic), then random ones per generation mode."""
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    tail = LogTail(live.output)
    counter = itertools.count(1)
    failures: dict[str, list[str]] = {}
    succeeded: set[str] = set()
    ids = finished_authorizations(live, 8)

    def one(case: Any) -> None:
        n = next(counter)
        if exercise(case, live, tail, n, ids[n % len(ids)]):
            succeeded.add(case.operation.label)

    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    assert len(operations) == 2 * len(METHODS) + 1  # GET and POST of each, and /health
    for operation in operations:
        found = failures.setdefault(operation.label, [])
        coverage = schema.iter_coverage_cases(
            operation,
            generation_modes=list(GenerationMode),
            generation_config=schema.config.generation_for(operation=operation),
        )
        for case in coverage:
            try:
                one(case)
            except (AssertionError, FailureGroup) as exc:  # all run; the report lists them
                found.append(f"[coverage] {exc!s:.2000}")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],  # no shrinking: keeps the run short
            )
            def run(case: Any) -> None:
                one(case)

            try:
                run()
            except Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters)
            except Exception as exc:  # collected, so one run reports every operation
                error: BaseException = exc
                if isinstance(exc, BaseExceptionGroup):  # Hypothesis' "flaky": the first error
                    error = exc.exceptions[0]
                found.append(f"[{mode.value}] {error!s:.2000}")
    report = [f"{label} {text}" for label, texts in failures.items() for text in texts[:3]]
    assert not report, f"{len(report)} failures:\n\n" + "\n\n".join(report)
    # Success answers were fuzzed too, not only errors.
    assert succeeded == {op.label for op in operations}


# -- webhooks (OpenAPI 3.1 `webhooks`) ---------------------------------------------------------


def webhook_validator(doc: dict[str, Any], name: str) -> Draft202012Validator:
    """Validates a body against the documented request body of webhook ``name``."""
    body = doc["webhooks"][name]["post"]["requestBody"]["content"]["application/json"]
    root = {"components": doc["components"], **body["schema"]}
    return Draft202012Validator(root, format_checker=FormatChecker())


async def test_document_lists_verify_code_and_the_webhook_payloads(api: Api) -> None:
    doc = await fetch_document(api)
    assert {"get", "post"} <= set(doc["paths"]["/v1.0/verifyCode"])
    assert set(doc["webhooks"]) == {"statusEvent", "inboundCall"}
    for hook in doc["webhooks"].values():
        headers = {p["name"] for p in hook["post"]["parameters"] if p["in"] == "header"}
        assert headers == {"X-Opencaller-Signature", "X-Opencaller-Event"}
    status = webhook_validator(doc, "statusEvent")
    good = {"event_id": "e1", "ucaller_id": 7, "service_id": 1, "timestamp": 1_700_000_000}
    finished = {"call_status": 1, "call_outcome": "delivered", "sip_code": None}
    assert status.is_valid({**good, "event": "dialing"})
    assert status.is_valid({**good, "event": "finished", **finished})
    assert status.is_valid({**good, "event": "verified", "verified_at": 1_700_000_000})
    # Each kind's fields are its own: a schema that let these through would catch nothing.
    assert not status.is_valid({**good, "event": "finished"})
    assert not status.is_valid({**good, "event": "dialing", **finished})
    assert not status.is_valid({**good, "event": "called"})
    assert not webhook_validator(doc, "inboundCall").is_valid({"callId": "1"})
    page = (await api.client.get("/docs")).text
    for name in ("StatusDialing", "StatusFinished", "StatusVerified", "InboundCallWebhook"):
        assert f'id="{name}"' in page
