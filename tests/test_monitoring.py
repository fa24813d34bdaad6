"""What operators watch: the alerting rules and the Grafana dashboard in deploy/ name only
metrics that /metrics really exposes, promtool accepts the rules (and their unit tests pass),
and the scrape-time gauges report what is happening."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from opencaller.config import Settings
from opencaller.domain.clock import FakeClock
from opencaller.webhooks.outbox import enqueue

from .support import Api, make_api

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "opencaller-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "opencaller-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "opencaller.json"


def exposed_names(text: str) -> set[str]:
    """Every series name a PromQL expression could use: families, and their sample names
    (counters' _total, histograms' _bucket/_sum/_count), even before the first sample."""
    names: set[str] = set()
    for fam in text_string_to_metric_families(text):
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        if fam.type == "histogram":
            names.update(fam.name + x for x in ("_bucket", "_sum", "_count"))
    return names


def gauge(text: str, name: str, **labels: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"{name}{labels} not exposed")


def used_names(source: str) -> set[str]:
    return set(re.findall(r"\bopencaller_[a-z0-9_]+", source))


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())  # valid JSON, or this fails
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


async def test_rules_and_dashboard_use_only_exposed_metrics(api: Api) -> None:
    body = await api.get("initCall", phone="79000000001")
    await api.wait_final(body["ucaller_id"])
    text = (await api.client.get("/metrics")).text
    exposed = exposed_names(text)
    in_rules = used_names(RULES.read_text())
    in_dashboard = used_names("\n".join(dashboard_exprs()))
    assert len(in_rules) >= 8 and len(in_dashboard) >= 8
    assert in_rules - exposed == set()
    assert in_dashboard - exposed == set()
    # Every rule metric is also on the dashboard, so an alert has a panel to look at.
    assert in_rules - in_dashboard == set()


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is missing: scripts/test installs it (Debian package prometheus)")
    return exe


def test_promtool_accepts_the_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rule_unit_tests_pass() -> None:
    out = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


async def test_scrape_reports_queue_age_webhook_backlog_and_sip_codes(
    settings: Settings, clock: FakeClock
) -> None:
    clock.t = time.time() - 120
    async with make_api(settings, clock, dispatch=False) as api:
        await api.get("initCall", phone="79161234567")  # nobody dispatches: stays queued
        async with api.rt.db.write() as conn:
            await enqueue(
                conn,
                service_id=api.service_id,
                url="http://127.0.0.1:9/",
                event="x",
                body=b"{}",
                now=time.time() - 300,
            )
        text = (await api.client.get("/metrics")).text
    assert gauge(text, "opencaller_queue_depth", state="queued") == 1
    assert gauge(text, "opencaller_queue_oldest_seconds", state="queued") >= 120
    assert gauge(text, "opencaller_queue_oldest_seconds", state="dialing") == 0
    assert gauge(text, "opencaller_dialing_expired_leases") == 0
    assert gauge(text, "opencaller_webhook_outbox", state="pending") == 1
    assert gauge(text, "opencaller_webhook_oldest_pending_seconds") >= 300
    assert gauge(text, "opencaller_dependency_up", dependency="database") == 1


async def test_finished_calls_are_counted_by_sip_status(api: Api) -> None:
    body = await api.get("initCall", phone="79000000001")
    await api.wait_final(body["ucaller_id"])
    text = (await api.client.get("/metrics")).text
    codes = [
        s
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "opencaller_call_sip_responses_total"
    ]
    assert codes and all(re.fullmatch(r"[1-6]\d\d|none", s.labels["sip_code"]) for s in codes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test alone, so stopping it disturbs no one."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is missing: scripts/test installs it")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.kill()
        proc.wait()


async def test_redis_down_shows_in_the_scrape(
    settings: Settings, clock: FakeClock, private_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, proc = private_redis
    settings = settings.model_copy(update={"redis_url": url})
    async with make_api(settings, clock, dispatch=False) as api:
        text = (await api.client.get("/metrics")).text
        assert gauge(text, "opencaller_dependency_up", dependency="redis") == 1
        proc.kill()
        proc.wait()
        r = await api.client.get("/metrics")
        assert r.status_code == 200
        assert gauge(r.text, "opencaller_dependency_up", dependency="redis") == 0
        assert gauge(r.text, "opencaller_dependency_up", dependency="database") == 1
