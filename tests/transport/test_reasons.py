"""Every close reason has a text and a WebSocket close code a browser may receive."""

from __future__ import annotations

from netbus.transport.reasons import CloseReason


def test_codes_are_valid_close_codes() -> None:
    for reason in CloseReason:
        assert reason.text and str(reason) == reason.text
        assert reason.ws_code in (1000, 1001, 1003, 1006, 1008, 1009, 1011) or (
            4000 <= reason.ws_code <= 4999
        ), reason


def test_application_codes_are_unique() -> None:
    app = [r.ws_code for r in CloseReason if r.ws_code >= 4000]
    assert len(app) == len(set(app))


def test_shutdown_is_going_away_and_relogin_is_an_application_code() -> None:
    assert CloseReason.SHUTDOWN.ws_code == 1001
    assert CloseReason.RELOGIN.ws_code == 4000


def test_every_close_code_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for reason in CloseReason:
        assert f"| {reason.ws_code} |" in doc, f"docs/protocol.md §2.2 lacks {reason.ws_code}"
