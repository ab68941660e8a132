"""Logging: JSON lines carry the connection context; secrets are masked."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from netbus.log import QUIET_LOGGERS, conn_context, redact, setup_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """setup_logging changes process-wide logger levels: put them back afterwards."""
    names = ["", *QUIET_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = logging.getLogger().handlers[:]
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().handlers[:] = handlers


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


DIGEST = "36204acd1a6c99ed3f5b9b02b32737b6fde36cdf66412a5e0937a469af67bccb"


def test_redact() -> None:
    assert redact(f"('{DIGEST}', 5)") == "('***', 5)"
    assert redact(f"x{DIGEST.upper()}y") == "x***y"
    assert redact("a" * 63) == "a" * 63  # not digest-shaped: kept
    assert redact("0" * 65) == "0" * 65
    for field in ("guest_key", "password", "passwd", "pepper", "secret", "token", "digest"):
        assert redact(f"{field}=hunter2xyz, next") == f"{field}=***, next"
        assert redact(f'{{"{field}": "hunter2xyz"}}') == f'{{"{field}": "***"}}'
    assert redact("uid=42 stype=1") == "uid=42 stype=1"


def test_text_lines_and_tracebacks_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("center", level="DEBUG")
    try:
        log = logging.getLogger("netbus.test")
        try:
            raise ValueError(f"Duplicate entry '{DIGEST}' for key 'ix_uinfo_guest_key'")
        except ValueError:
            log.exception("login failed for %s", DIGEST)
        err = capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
    assert "login failed for ***" in err
    assert "Duplicate entry '***'" in err
    assert DIGEST not in err


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "ERROR"])
def test_driver_loggers_stay_quiet_at_every_level(
    level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("center", level=level)
    try:
        for name in ("aiosqlite", "asyncmy", "sqlalchemy.engine.Engine", "sqlalchemy.pool"):
            logger = logging.getLogger(name)
            assert not logger.isEnabledFor(logging.INFO), name
            logger.info("executing %s", ("params",))
        assert logging.getLogger("netbus.x").isEnabledFor(logging.getLevelName(level))
        assert QUIET_LOGGERS["aiosqlite"] == logging.WARNING
        assert "params" not in capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
