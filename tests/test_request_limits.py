"""Hostile input on the wire: bodies, heads and forms are bounded in size and time.

Everything goes through a real `opencaller serve` process; raw sockets where httpx cannot send
the attack (a lying Content-Length, a head that never ends, a body that never arrives).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from .live import LiveServer, start_server
from .support import pg_database

pytestmark = pytest.mark.slow

PG_URL = os.environ.get("OPENCALLER_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("OPENCALLER_TEST_REDIS_URL", "")
TIMEOUT_S = 1  # body, head and keep-alive timeouts of the server under test
MB = 1024 * 1024


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PG_URL:
        with pg_database(PG_URL) as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('limits-db')}/opencaller.db"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Iterator[LiveServer]:
    env = {
        "OPENCALLER_DATABASE_URL": db_url,
        "OPENCALLER_REDIS_PREFIX": f"oc-test:{uuid.uuid4().hex[:12]}:",
        "OPENCALLER_BODY_TIMEOUT_S": str(TIMEOUT_S),
        "OPENCALLER_HEADER_TIMEOUT_S": str(TIMEOUT_S),
        "OPENCALLER_KEEPALIVE_TIMEOUT_S": str(TIMEOUT_S),
        "OPENCALLER_AUTH_CACHE_S": "0",
    }
    if REDIS_URL:
        env["OPENCALLER_REDIS_URL"] = REDIS_URL
    live = start_server(tmp_path_factory.mktemp("limits"), env)
    try:
        # The checks between attacks would otherwise hit the 50 requests per second.
        command = ["service", "set", str(live.service_id), "--rps-limit", "100000"]
        subprocess.run(
            [sys.executable, "-m", "opencaller", *command],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
        yield live
    finally:
        live.kill()


@pytest.fixture(autouse=True)
def no_traceback(server: LiveServer) -> Iterator[None]:
    """Whatever a test sends, the server logs no stack trace and keeps answering."""
    before = len(server.output.read_bytes())
    yield
    assert_still_serving(server)
    logged = server.output.read_bytes()[before:].decode(errors="replace")
    assert "Traceback" not in logged, logged


# -- helpers -----------------------------------------------------------------------------------


def creds(server: LiveServer, **extra: str) -> dict[str, str]:
    return {"service_id": str(server.service_id), "key": server.key, **extra}


def assert_still_serving(server: LiveServer) -> None:
    body = httpx.get(f"{server.url}/v1.0/getBalance", params=creds(server), timeout=10).json()
    assert body["status"] is True, body


def rss_kb(server: LiveServer) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect(server: LiveServer, timeout: float = 20) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: fail)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def head(server: LiveServer, method: str, path: str, *extra: str) -> bytes:
    port = server.url.rsplit(":", 1)[1]
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *extra, "", ""]
    return "\r\n".join(lines).encode()


def api_path(server: LiveServer, method: str = "getBalance") -> str:
    return f"/v1.0/{method}?service_id={server.service_id}&key={server.key}"


def assert_error_1(raw: bytes, text: str) -> None:
    status, headers, body = split(raw)
    assert status == 200, raw[:300]
    assert headers["content-type"].startswith("application/json")
    answer = orjson.loads(body)
    assert answer["status"] is False and answer["code"] == 1, answer
    assert text in answer["error"], answer


def send_quietly(sock: socket.socket, data: bytes) -> int:
    """Send as much of ``data`` as the server takes before it closes; return how much."""
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent : sent + 65536])
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


# -- normal requests ---------------------------------------------------------------------------


def test_a_1kb_request_works_with_every_encoding(server: LiveServer) -> None:
    args = {**creds(server), "phone": "79000000001", "client": "c" * 64, "pad": "p" * 1000}
    url = f"{server.url}/v1.0/initCall"
    text_args = {k: str(v) for k, v in args.items()}
    answers = [
        httpx.get(url, params=args),
        httpx.post(url, json=args),
        httpx.post(url, data=text_args),
        httpx.post(url, files={k: (None, v) for k, v in text_args.items()}),
    ]
    for response in answers:
        assert response.status_code == 200
        assert response.json()["status"] is True, response.json()
    # Many small requests on one keep-alive connection all pass the head and body checks.
    with httpx.Client() as client:
        for _ in range(100):
            body = client.post(f"{server.url}/v1.0/getBalance", json=creds(server)).json()
            assert body["status"] is True


def test_a_body_of_the_largest_allowed_size_is_read(server: LiveServer) -> None:
    # 60 KiB of arguments (under the 64 KiB default): an answer, not a refusal.
    args = {**creds(server), "pad": "p" * 60_000}
    body = httpx.post(f"{server.url}/v1.0/getBalance", json=args).json()
    assert body["status"] is True, body


# -- bodies too large --------------------------------------------------------------------------


def test_a_30mb_declared_body_is_refused_before_it_is_read(server: LiveServer) -> None:
    for expect in ((), ("Expect: 100-continue",)):
        with connect(server) as sock:
            sock.sendall(
                head(
                    server,
                    "POST",
                    api_path(server),
                    "Content-Type: application/json",
                    f"Content-Length: {30 * MB}",
                    *expect,
                )
            )
            raw = read_until_closed(sock)
        # The final answer at once (no "100 Continue"), and the connection is closed.
        assert raw.startswith(b"HTTP/1.1 200 "), raw[:100]
        assert_error_1(raw, "larger than 65536 bytes")
        assert split(raw)[1]["connection"] == "close"


def test_thirty_megabyte_bodies_leave_the_servers_memory_alone(server: LiveServer) -> None:
    """Four clients at once send 30 MB each (declared, chunked, and a Content-Length that lies):
    the server reads a bounded prefix of each and closes; its RSS does not grow."""
    assert_still_serving(server)
    before = rss_kb(server)
    payload = b"x" * (30 * MB)
    chunk = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"
    heads = [
        head(server, "POST", api_path(server), f"Content-Length: {len(payload)}"),
        head(server, "POST", api_path(server), "Transfer-Encoding: chunked"),
        head(
            server,
            "POST",
            "/dashboard/signin",
            "Content-Type: application/x-www-form-urlencoded",
            "Transfer-Encoding: chunked",
        ),
        head(server, "POST", api_path(server), "Content-Length: 10"),
    ]
    bodies = [payload, chunk * 480, chunk * 480, payload]
    sent = [0] * len(heads)

    def attack(i: int) -> None:
        with connect(server) as sock:
            sock.sendall(heads[i])
            sent[i] = send_quietly(sock, bodies[i])

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(len(heads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert_still_serving(server)
    grown_kb = rss_kb(server) - before
    assert grown_kb < 10 * 1024, f"server RSS grew by {grown_kb} KiB"
    # The server stopped reading long before the end of every body.
    for i, n in enumerate(sent):
        assert n < len(bodies[i]) // 2, (i, n)


def test_a_chunked_body_stops_at_the_limit(server: LiveServer) -> None:
    chunk = b"4000\r\n" + b"z" * 0x4000 + b"\r\n"
    with connect(server) as sock:
        sock.sendall(
            head(
                server,
                "POST",
                api_path(server),
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            )
        )
        send_quietly(sock, chunk * 8)  # 128 KiB, never terminated
        raw = read_until_closed(sock)
    assert_error_1(raw, "larger than 65536 bytes")
    assert split(raw)[1]["connection"] == "close"


def test_an_answer_before_the_body_is_read_closes_the_connection(server: LiveServer) -> None:
    # No form type: the dashboard answers (403, no CSRF token) without reading the body;
    # the server must not go on reading the rest for as long as the client sends it.
    chunk = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"
    with connect(server) as sock:
        sock.sendall(head(server, "POST", "/dashboard/signin", "Transfer-Encoding: chunked"))
        sent = send_quietly(sock, chunk * 480)
        raw = read_until_closed(sock)
    assert sent < len(chunk) * 240, sent
    status, headers, _ = split(raw)
    assert status == 403 and headers["connection"] == "close"


def test_the_dashboard_answers_a_plain_413(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(
            head(
                server,
                "POST",
                "/dashboard/signin",
                "Content-Type: application/x-www-form-urlencoded",
                f"Content-Length: {30 * MB}",
            )
        )
        raw = read_until_closed(sock)
    status, headers, body = split(raw)
    assert status == 413 and headers["connection"] == "close"
    assert headers["content-type"].startswith("text/plain")
    assert b"larger than 65536 bytes" in body
    # Streamed: the same answer, once the limit is crossed.
    chunk = b"4000\r\n" + b"a" * 0x4000 + b"\r\n"
    with connect(server) as sock:
        sock.sendall(
            head(
                server,
                "POST",
                "/dashboard/signin",
                "Content-Type: application/x-www-form-urlencoded",
                "Transfer-Encoding: chunked",
            )
        )
        send_quietly(sock, chunk * 8)
        raw = read_until_closed(sock)
    assert split(raw)[0] == 413, raw[:200]


# -- slow and stalled requests -----------------------------------------------------------------


def test_a_stalled_body_is_answered_and_dropped(server: LiveServer) -> None:
    cases = [
        ("Content-Length: 200", b'{"phone": '),  # part of the body, then nothing
        ("Content-Length: 200", b""),  # headers only
        ("Transfer-Encoding: chunked", b"5\r\nhello\r\n"),  # no final chunk
    ]
    for framing, partial in cases:
        with connect(server) as sock:
            sock.sendall(head(server, "POST", api_path(server), framing) + partial)
            started = time.monotonic()
            raw = read_until_closed(sock)  # the socket's 20 s timeout fails the test
            waited = time.monotonic() - started
        assert_error_1(raw, f"did not arrive within {TIMEOUT_S} seconds")
        assert split(raw)[1]["connection"] == "close"
        assert waited >= TIMEOUT_S * 0.9, waited  # not refused early
        assert_still_serving(server)


def test_a_stalled_head_and_an_idle_connection_are_dropped(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(head(server, "GET", api_path(server)).removesuffix(b"\r\n\r\n"))
        raw = read_until_closed(sock)
    assert split(raw)[0] == 408, raw[:200]
    with connect(server) as sock:  # connects and sends nothing
        assert read_until_closed(sock) == b""
    with connect(server) as sock:  # keep-alive: one answer, then silence
        sock.sendall(head(server, "GET", api_path(server)))
        raw = read_until_closed(sock)
    assert split(raw)[0] == 200 and b'"status":true' in raw
    with connect(server) as sock:  # blank lines between requests do not keep it open either
        sock.sendall(head(server, "GET", api_path(server)))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        closed = False
        for _ in range(40):
            time.sleep(TIMEOUT_S / 4)
            try:
                sock.sendall(b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "the connection stayed open on blank lines"


# -- heads too large ---------------------------------------------------------------------------


def test_an_oversized_header_is_refused(server: LiveServer) -> None:
    before = rss_kb(server)
    for size in (20 * 1024, MB):
        with connect(server) as sock:
            send_quietly(sock, head(server, "GET", api_path(server), "X-Big: " + "b" * size))
            raw = read_until_closed(sock)
        status, headers, _ = split(raw)
        assert status == 431 and headers["connection"] == "close", raw[:200]
    # A long query string is part of the head too.
    with connect(server) as sock:
        send_quietly(sock, head(server, "GET", api_path(server) + "&pad=" + "q" * 20_000))
        assert split(read_until_closed(sock))[0] == 431
    assert rss_kb(server) - before < 10 * 1024
    # Headers of a realistic size pass.
    response = httpx.get(
        f"{server.url}/v1.0/getBalance", params=creds(server), headers={"X-Big": "b" * 8000}
    )
    assert response.json()["status"] is True


# -- forms ------------------------------------------------------------------------------------


def test_malformed_and_oversized_forms_are_error_1(server: LiveServer) -> None:
    url = f"{server.url}/v1.0/getBalance"
    many = {f"f{i}": "1" for i in range(3000)}
    cases = [
        # multipart without a boundary
        httpx.post(
            url,
            params=creds(server),
            content=b"key=value",
            headers={"Content-Type": "multipart/form-data"},
        ),
        # multipart with over a thousand fields (short ones: the body stays under 64 KiB)
        httpx.post(
            url,
            params=creds(server),
            content=b"".join(
                b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n1\r\n' % i
                for i in range(1100)
            )
            + b"--b--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        ),
        # form-urlencoded, JSON and the query string with thousands of fields
        httpx.post(url, params=creds(server), data=many),
        httpx.post(url, params=creds(server), json=many),
        httpx.get(url, params={**creds(server), **dict(list(many.items())[:1000])}),
    ]
    for response in cases:
        assert response.status_code == 200
        body = response.json()
        assert body["status"] is False and body["code"] == 1, body
    assert "boundary" in cases[0].json()["error"].lower()
    assert "Too many fields" in cases[1].json()["error"]
    assert "More than 100 parameters" in cases[2].json()["error"]
