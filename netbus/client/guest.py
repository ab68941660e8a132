"""Guest keys kept in a local file, as the original client kept them in local storage."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

__all__ = ["load_or_create_key", "new_guest_key"]

_ALPHABET = string.ascii_letters + string.digits + "_-"


def new_guest_key(length: int = 32) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def load_or_create_key(path: str | os.PathLike[str]) -> str:
    """The key stored at ``path``, or a new one written there (mode 0600)."""
    file = Path(path)
    if file.exists():
        return file.read_text().strip()
    file.parent.mkdir(parents=True, exist_ok=True)
    key = new_guest_key()
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
