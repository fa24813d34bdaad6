"""``opencaller sip-status URL``: the SIP trunks' state (registration, keepalives, ring
rates) and the caller-ID prefixes out of the pool, read from a running process's /metrics
(the API's, or a worker's ``--metrics-port``): the state lives in the process that dials."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Annotated

import typer

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _samples(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families  # `--help` stays fast

    out: Samples = defaultdict(dict)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("opencaller_sip_"):
                out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in samples.get(name, {}).items() if label in dict(k)}


def _ago(since: float | None, now: float) -> str:
    return "" if not since else f" for {int(now - since)} s"


def _rang(samples: Samples, label: str) -> dict[str, tuple[float, float]]:
    name = f"opencaller_sip_{label}_calls_total"
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for key, v in samples.get(name, {}).items():
        labels = dict(key)
        row = totals[labels[label]]
        row[0] += v if labels.get("result") == "rang" else 0.0
        row[1] += v
    return {k: (r[0], r[1]) for k, r in totals.items()}


def status_lines(text: str, now: float | None = None) -> list[str]:
    """One line per trunk and per tracked caller-ID prefix, from a /metrics text."""
    now = time.time() if now is None else now
    s = _samples(text)
    reg = _by(s, "opencaller_sip_trunk_registered", "trunk")
    code = _by(s, "opencaller_sip_trunk_register_last_code", "trunk")
    up = _by(s, "opencaller_sip_trunk_up", "trunk")
    since = {
        (dict(k)["trunk"], dict(k)["kind"]): v
        for k, v in s.get("opencaller_sip_trunk_state_since_seconds", {}).items()
    }
    rang = _rang(s, "trunk")
    lines = []
    for trunk in sorted(set(reg) | set(up) | set(rang)):
        parts = []
        if trunk in reg:
            state = "registered" if reg[trunk] else "NOT registered"
            last = int(code.get(trunk, 0))
            parts.append(
                f"{state} (last {last or 'no answer'})" + _ago(since.get((trunk, "register")), now)
            )
        if trunk in up:
            parts.append(("up" if up[trunk] else "DOWN") + _ago(since.get((trunk, "options")), now))
        r, n = rang.get(trunk, (0.0, 0.0))
        parts.append(f"rang {int(r)} of {int(n)} attempts")
        lines.append(f"trunk {trunk}: " + ", ".join(parts))
    rate = _by(s, "opencaller_sip_prefix_ring_rate", "prefix")
    blocked = _by(s, "opencaller_sip_prefix_blocked", "prefix")
    for prefix in sorted(set(rate) | set(blocked)):
        state = "OUT of the pool" if blocked.get(prefix) else "in the pool"
        ring = f", ring rate {rate[prefix]:.0%}" if prefix in rate else ""
        lines.append(f"caller-ID prefix {prefix}: {state}{ring}")
    return lines


def sip_status(
    url: Annotated[str, typer.Argument(help="The /metrics address, e.g. http://127.0.0.1:9100/")],
) -> None:
    """Show the SIP trunks' registration, keepalive and ring-rate state of a running process."""
    import httpx

    resp = httpx.get(url, timeout=10.0)
    resp.raise_for_status()
    lines = status_lines(resp.text)
    typer.echo("\n".join(lines) if lines else "no SIP trunk state in these metrics")
