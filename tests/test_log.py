"""Logging: JSON lines carry the connection context; secrets are masked."""

from __future__ import annotations

import logging

import orjson
import pytest

from netbus.log import conn_context, setup_logging


class _Session:
    sid = 7
    uid = 42
    peer = ("203.0.113.9", 40000)


def test_json_lines_carry_connection_context_and_mask_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("gateway", json_format=True)
    try:
        logging.getLogger("netbus.test").info(
            "kicked guest_key=%s", "Abcdefghijklmnop1234", extra=conn_context(_Session())
        )
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.getLogger().handlers.clear()
    doc = orjson.loads(line)
    assert doc["role"] == "gateway"
    assert (doc["conn"], doc["uid"]) == (7, 42)
    assert "Abcdefghijklmnop1234" not in line
    assert doc["msg"] == "kicked guest_key=***"
