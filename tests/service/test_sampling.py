"""`SampledLog`: a few lines per reason and window, then one summary; counts stay exact."""

from __future__ import annotations

import logging

import pytest

from netbus.service.sampling import SampledLog

log = logging.getLogger("tests.sampling")


def test_lines_per_window_then_a_summary(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    sampled = SampledLog(log, per_window=3, window=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="tests.sampling"):
        logged = [sampled.log("bad", logging.INFO, "bad %d", i) for i in range(10)]
        assert logged == [True] * 3 + [False] * 7
        assert sampled.log("other", logging.INFO, "other reason")  # its own budget
        assert [r.getMessage() for r in caplog.records] == [
            "bad 0",
            "bad 1",
            "bad 2",
            "other reason",
        ]
        caplog.clear()
        now[0] += 59.0
        sampled.flush_expired()  # the window has not ended
        assert caplog.records == []
        now[0] += 1.0
        sampled.flush_expired()
        assert [r.getMessage() for r in caplog.records] == [
            "7 more bad events in 60 s were not logged (counted in metrics)"
        ]
        caplog.clear()
        assert sampled.log("bad", logging.INFO, "bad again")  # a fresh window
        assert [r.getMessage() for r in caplog.records] == ["bad again"]


def test_a_new_event_after_the_window_writes_the_old_summary_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    sampled = SampledLog(log, per_window=1, window=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="tests.sampling"):
        sampled.log("x", logging.INFO, "first")
        sampled.log("x", logging.INFO, "suppressed")
        now[0] = 10.0
        sampled.log("x", logging.INFO, "next window")
        sampled.log("x", logging.INFO, "suppressed again")
        sampled.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "first",
        "1 more x events in 10 s were not logged (counted in metrics)",
        "next window",
        "1 more x events in 10 s were not logged (counted in metrics)",
    ]


def test_exc_info_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    sampled = SampledLog(log, clock=lambda: 0.0)
    with caplog.at_level(logging.ERROR, logger="tests.sampling"):
        sampled.log("bug", logging.ERROR, "failed", exc_info=RuntimeError("boom"))
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[1] is not None
