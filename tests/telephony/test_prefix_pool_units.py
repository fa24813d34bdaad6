"""The sliding window behind caller-ID prefix blocking, on a controllable clock, and the
caller-ID pool skipping blocked prefixes."""

from __future__ import annotations

from opencaller.telephony.base import Outcome
from opencaller.telephony.sip.config import CallerIdPool, PrefixHealthConfig
from opencaller.telephony.sip.health import TrunkHealth
from opencaller.telephony.sip.pool import CallerIdChooser
from opencaller.telephony.sip.prefix_pool import PrefixHealth, PrefixStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker(clock: Clock, **kw: float) -> tuple[PrefixHealth, list[PrefixStats]]:
    changes: list[PrefixStats] = []
    base = {"window_s": 60.0, "min_calls": 5, "min_ring_rate": 0.3, "cooldown_s": 300.0}
    cfg = PrefixHealthConfig.model_validate({**base, **kw})
    return PrefixHealth(cfg, clock=clock, on_change=changes.append), changes


def test_collapse_needs_the_minimum_sample_and_a_rate_below_the_threshold() -> None:
    clock = Clock()
    ph, _ = tracker(clock)
    for _ in range(4):
        ph.record("79005550001", Outcome.REJECTED)
    assert not ph.blocked("7900555")  # 4 calls: below the minimum sample
    ph.record("79005551111", Outcome.DELIVERED)
    # 1 of 5 rang: 20 % < 30 %
    assert ph.blocked("7900555")
    assert ph.ring_rates()["7900555"] == PrefixStats("7900555", 5, 0.2, True)


def test_healthy_prefix_and_network_errors_do_not_block() -> None:
    clock = Clock()
    ph, _ = tracker(clock)
    for i in range(20):
        outcome = Outcome.DELIVERED if i % 2 else Outcome.BUSY
        ph.record("79007770000", outcome)
        ph.record("79008880000", Outcome.NETWORK_ERROR)  # our trunk, not the caller ID
    assert not ph.blocked("7900777") and not ph.blocked("7900888")
    assert ph.ring_rates()["7900777"].ring_rate == 0.5
    assert "7900888" not in ph.ring_rates()


def test_window_slides_old_failures_out() -> None:
    clock = Clock()
    ph, _ = tracker(clock)
    for _ in range(4):
        ph.record("79005550000", Outcome.REJECTED)
    clock.now += 61  # those four leave the window
    for _ in range(4):
        ph.record("79005550000", Outcome.DELIVERED)
    ph.record("79005550000", Outcome.REJECTED)
    assert not ph.blocked("7900555")
    assert ph.ring_rates()["7900555"].calls == 5


def test_cool_down_puts_the_prefix_back_with_an_empty_window() -> None:
    clock = Clock()
    ph, changes = tracker(clock)
    for _ in range(5):
        ph.record("79005550000", Outcome.NOT_FOUND)
    assert ph.blocked("7900555") and changes[-1].blocked
    clock.now += 299
    assert ph.blocked("7900555")
    clock.now += 2
    assert not ph.blocked("7900555")
    assert changes[-1] == PrefixStats("7900555", 0, None, False)
    ph.record("79005550000", Outcome.NOT_FOUND)  # one more failure does not re-block
    assert not ph.blocked("7900555")
    assert not ph.restore("7900555")  # nothing to restore


def test_tracked_prefixes_are_bounded_and_blocked_ones_kept() -> None:
    clock = Clock()
    ph, _ = tracker(clock, max_prefixes=10, min_calls=1, min_ring_rate=0.5)
    ph.record("71110000000", Outcome.REJECTED)  # blocked at once (1 call, 0 %)
    for i in range(1000):
        ph.record(f"7{i:06d}0000", Outcome.DELIVERED)
    rates = ph.ring_rates()
    assert len(rates) == 10
    assert rates["7111000"].blocked


def test_pool_skips_blocked_prefixes_in_prefixes_numbers_and_ranges() -> None:
    pool = CallerIdChooser(
        CallerIdPool(
            prefixes=["7900555", "7900777"],
            ranges=["74996660000-74996679999"],
            numbers=["78001234567"],
        )
    )
    blocked = {"7900555", "7499666", "7800123"}
    pool.exclude = blocked.__contains__
    picks = {pool.pick("4567") for _ in range(200)}
    assert picks == {"79007774567", "74996674567"}
    blocked.update({"7900777", "7499667"})
    assert pool.pick("4567") is None
    assert pool.why_not("4567") is None  # configured, ...
    assert pool.why_not_now("4567") == (
        "every caller-ID prefix for 4567 is out of the pool (ring rate collapsed)"
    )


def test_trunk_health_counts_consecutive_answers() -> None:
    h = TrunkHealth(down_after=3, up_after=2)
    assert [h.record(c) for c in (None, None, 503)] == [False, False, True]
    assert not h.up and h.why_not() == "down (3 keepalives failed, last answer 503)"
    assert [h.record(c) for c in (200, None, 404, 405)] == [False, False, False, True]
    assert h.up and h.why_not() is None


def test_kept_prefixes_are_never_taken_out_and_evictions_are_reported() -> None:
    clock, forgotten = Clock(), []
    cfg = PrefixHealthConfig(min_calls=1, min_ring_rate=0.5, keep=["7900555"], max_prefixes=2)
    ph = PrefixHealth(cfg, clock=clock, on_evict=forgotten.append)
    for _ in range(10):
        ph.record("79005550000", Outcome.REJECTED)
    assert not ph.blocked("7900555")
    ph.record("79006660000", Outcome.DELIVERED)
    ph.record("79007770000", Outcome.DELIVERED)
    assert forgotten == ["7900555"]
