"""Logging set-up shared by every role: text or JSON lines, with secrets kept out.

Two lines of defence keep credentials (guest keys, their digests, passwords, peppers) out of
the logs, at every level, DEBUG included:

1. Loggers that print statement parameters or rows are held at WARNING whatever
   ``log.level`` says (`QUIET_LOGGERS`): ``aiosqlite`` logs every call with its bound
   parameters at DEBUG (the guest-key digest of each login), ``asyncmy`` logs interpolated
   queries when its ``echo`` is on, and SQLAlchemy's engine logs result rows at DEBUG.
   Engines are also created with ``hide_parameters`` (`netbus.storage.create_engine`), so
   SQL errors name no parameter either.
2. Every formatted line (message and traceback) is redacted (`redact`): values of
   secret-named fields (``guest_key=…``, ``password: …``, ``digest=…``) and anything shaped
   like a 64-hex-digit digest (HMAC-SHA256, as the database stores keys) become ``***``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

__all__ = [
    "QUIET_LOGGERS",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "conn_context",
    "redact",
    "setup_logging",
]

_SECRET_FIELD = re.compile(
    r"""((?:guest_key|password|passwd|pepper|secret|token|digest)["']?\s*[:=]\s*["']?)"""
    r"""[^"',\s})\]]+""",
    re.I,
)
#: a SHA-256 sized hex string: how the database stores a guest key (HMAC-SHA256 hex)
_HEX_DIGEST = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")

#: logger -> lowest level it may log at, whatever ``log.level`` is (see the module docstring)
QUIET_LOGGERS: dict[str, int] = {
    "aiosqlite": logging.WARNING,  # DEBUG: every call with its parameters
    "asyncmy": logging.WARNING,  # INFO with echo: queries with their parameters
    "sqlalchemy": logging.WARNING,  # engine DEBUG: result rows; pool DEBUG: noise
    "websockets": logging.WARNING,
    "aiohttp.access": logging.WARNING,
    "alembic.runtime.migration": logging.WARNING,
}


def redact(text: str) -> str:
    """``text`` with secret-named values and digest-shaped strings replaced by ``***``."""
    return _HEX_DIGEST.sub("***", _SECRET_FIELD.sub(r"\1***", text))


def conn_context(session: Any) -> dict[str, Any]:
    """``extra=`` for a log line about one connection: its id, uid and peer (JSON fields)."""
    return {"conn": session.sid, "uid": session.uid, "peer": str(session.peer)}


class RedactingFilter(logging.Filter):
    """Redacts the message of each record (for handlers that do not use our formatters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class TextFormatter(logging.Formatter):
    """``<time> <role> <LEVEL> <logger>: <message>``, traceback included, redacted."""

    def __init__(self, role: str) -> None:
        super().__init__(f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts level role logger msg`` (+ ``conn uid peer exc``)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "role": self.role,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key in ("conn", "uid", "peer"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(doc).decode()


def setup_logging(role: str, *, level: str = "INFO", json_format: bool = False) -> None:
    """Log to stderr as ``role``, at ``level`` (`QUIET_LOGGERS` stay at WARNING)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(role) if json_format else TextFormatter(role))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, floor in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
