"""Logging set-up shared by every role: text or JSON lines, with guest keys redacted.

Guest keys are 16-64 characters of ``[A-Za-z0-9_-]``; the redaction filter masks anything
logged under a key-like name, as a second line of defence behind "never log a key".
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

__all__ = ["JsonFormatter", "RedactingFilter", "conn_context", "setup_logging"]

_SECRET_FIELD = re.compile(
    r"""((?:guest_key|password|pepper|passwd)["']?\s*[:=]\s*["']?)[^"',\s}]+""", re.I
)


def conn_context(session: Any) -> dict[str, Any]:
    """``extra=`` for a log line about one connection: its id, uid and peer (JSON fields)."""
    return {"conn": session.sid, "uid": session.uid, "peer": str(session.peer)}


class RedactingFilter(logging.Filter):
    """Masks values of secret-looking fields in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_FIELD.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
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
            "msg": record.getMessage(),
        }
        for key in ("conn", "uid", "peer"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def setup_logging(role: str, *, level: str = "INFO", json_format: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s")
        )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("websockets", "aiohttp.access", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
