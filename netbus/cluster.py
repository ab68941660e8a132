"""The cluster secret that gateway<->service links prove at open (docs/security.md).

It comes from ``[cluster] secret`` (set it through the environment,
``NETBUS_CLUSTER__SECRET``) or from ``[cluster] secret_file``, which the first role to need
it creates with a random value, mode 0600. Roles started together (``netbus up``, or a test
starting center, talkroom and gateway at once) may race to create the file: it is written
under a temporary name and linked into place, so every process reads the same complete
secret and exactly one writer wins.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from netbus.config import Settings
from netbus.errors import ConfigError
from netbus.protocol.linkauth import MIN_SECRET

__all__ = ["cluster_secret", "read_or_create_secret"]

log = logging.getLogger("netbus.cluster")


def read_or_create_secret(path: Path, *, what: str) -> str:
    """The secret in ``path``; a new random one (mode 0600) if the file does not exist.

    Raises:
        ConfigError: the file cannot be read or created, or holds too short a secret.
    """
    try:
        if not path.exists():
            _create(path, what)
        mode = path.stat().st_mode
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read or create the {what} file {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the %s file %s is readable by others (mode %o)", what, path, mode & 0o777)
    if len(value) < MIN_SECRET:
        raise ConfigError(f"the {what} file {path} holds fewer than {MIN_SECRET} characters")
    return value


def _create(path: Path, what: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if another process got there first
            log.info("created a new %s at %s", what, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def cluster_secret(settings: Settings) -> bytes:
    """The cluster secret of ``settings``: configured, or read/created at ``secret_file``.

    Raises:
        ConfigError: shorter than 16 characters, or the file cannot be used.
    """
    cfg = settings.cluster
    if cfg.secret is not None:
        value = cfg.secret.get_secret_value()
        if len(value) < MIN_SECRET:
            raise ConfigError(f"cluster.secret must be at least {MIN_SECRET} characters")
        return value.encode()
    return read_or_create_secret(Path(cfg.secret_file), what="cluster secret").encode()
