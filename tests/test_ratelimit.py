"""`TokenBucket` on a fake clock: burst, refill, cap, and what a refused take costs."""

from __future__ import annotations

import pytest

from netbus.ratelimit import TokenBucket


def test_burst_then_refill_at_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.4)  # 0.8 tokens: not enough
    assert bucket.take(100.5)  # 1.0 token after 0.5 s at 2/s
    assert not bucket.take(100.5)


def test_refill_is_capped_at_burst_and_cost_is_honoured() -> None:
    bucket = TokenBucket(rate=10.0, burst=5.0, now=0.0)
    assert bucket.take(0.0, cost=5.0)
    assert bucket.level(1000.0) == 5.0  # an hour idle still holds only the burst
    assert not bucket.take(1000.0, cost=6.0)
    assert bucket.take(1000.0, cost=5.0)
    assert bucket.full_at() == pytest.approx(1000.5)


def test_refused_take_costs_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0, now=0.0)
    assert bucket.take(0.0)
    for _ in range(100):
        assert not bucket.take(0.5)
    assert bucket.take(1.0)  # the refusals did not push the refill back


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_rejects_non_positive_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)
