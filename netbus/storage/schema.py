"""SQLAlchemy Core tables: ``uinfo`` (accounts), ``session_tokens`` and ``login_failures``.

Why Core and not the ORM: the center server does a handful of hot, hand-tuned statements per
login and nothing else, and one ``Table`` + statement code path runs unchanged on SQLite and
MySQL/MariaDB (STACK.md "Database"). Portability choices made here:

* ``uid`` is ``BIGINT AUTO_INCREMENT`` on MySQL/MariaDB but plain ``INTEGER PRIMARY KEY`` on
  SQLite (only that spelling is a rowid alias that autoincrements). Whatever the column can
  hold, a uid handed to the wire protocol must stay in ``1..MAX_UID`` (checked in accounts.py).
* Every timestamp is a **unix-seconds integer** (``BIGINT``, 2038-safe), written by the
  application, never a server default: the same value comes back on every dialect with no
  time-zone or ``DATETIME`` precision surprises.
* ``guest_key`` holds ``HMAC-SHA256(pepper, key)`` as 64 lowercase hex characters, never the
  key. Its UNIQUE index is what makes concurrent first logins of one key produce one account.
* ``uname_key`` is the normalised username (`netbus.storage.usernames`), UNIQUE, compared
  byte for byte (``utf8mb4_bin`` on MySQL/MariaDB): the application already folded case,
  and a ``_ci`` collation would merge names the rules keep apart ("a" and "á"). ``uname``
  keeps the name as typed (NFKC) and ``upwd`` its argon2id hash.
* ``session_tokens`` holds resume tokens as ``HMAC-SHA256(pepper, token)``, like guest keys;
  ``login_failures`` the lockout counters (`netbus.storage.lockout_sql`), under keyed digests.
* Constraint names come from a naming convention, so alembic batch mode (SQLite) and later
  migrations can address them by name on every dialect. The primary key stays unnamed:
  MySQL ignores the name and logs a warning for it.

This module is the *current* shape; ``migrations/versions`` holds frozen copies of each
step, and a test checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    text,
)
from sqlalchemy.dialects import mysql

from netbus.protocol.header import MAX_UID

__all__ = [
    "DIGEST_LENGTH",
    "GUEST_KEY_HASH_LENGTH",
    "MAX_UID",
    "NAMING_CONVENTION",
    "USERNAME_KEY_LENGTH",
    "login_failures",
    "metadata",
    "session_tokens",
    "uinfo",
]

#: MAX_UID (from the header module): the largest uid the wire protocol can carry, since the
#: gateway reserves the top bit of the u32 utag for connections not logged in (docs/protocol.md §8).

#: Length of every stored digest (hex of a 32-byte HMAC-SHA256): guest keys, tokens, limiter keys.
DIGEST_LENGTH = 64
GUEST_KEY_HASH_LENGTH = DIGEST_LENGTH

#: Room for a username key (32 code points, which case folding may expand up to threefold).
USERNAME_KEY_LENGTH = 128

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

uinfo = Table(
    "uinfo",
    metadata,
    Column(
        "uid",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("unick", String(64), nullable=False, server_default=""),
    Column("uname", String(64), nullable=True),
    Column("upwd", String(128), nullable=True),
    Column("usex", SmallInteger, nullable=False, server_default=text("0")),
    Column("uface", Integer, nullable=False, server_default=text("0")),
    Column("uphone", String(32), nullable=True),
    Column("uemail", String(128), nullable=True),
    Column("ucity", String(64), nullable=True),
    Column("guest_key", String(GUEST_KEY_HASH_LENGTH), nullable=True),
    Column(
        "uname_key",
        String(USERNAME_KEY_LENGTH).with_variant(
            mysql.VARCHAR(USERNAME_KEY_LENGTH, collation="utf8mb4_bin"), "mysql", "mariadb"
        ),
        nullable=True,
    ),
    Column("is_guest", Boolean(create_constraint=False), nullable=False, server_default=text("0")),
    Column("uvip", Integer, nullable=False, server_default=text("0")),
    Column("vip_endtime", BigInteger, nullable=False, server_default=text("0")),
    Column("status", Integer, nullable=False, server_default=text("0")),
    Column("created_at", BigInteger, nullable=False, server_default=text("0")),
    Column("last_login_at", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("usex IN (0, 1)", name="usex"),
    Index("ix_uinfo_guest_key", "guest_key", unique=True),
    Index("ix_uinfo_uname_key", "uname_key", unique=True),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

#: Resume tokens (`netbus.storage.tokens_sql`). A family is the chain of tokens one login
#: started; rotation adds to it, a replayed token deletes it. ``used_at`` is 0 while the
#: token is live, else when it was rotated away (kept until expiry to detect replays).
session_tokens = Table(
    "session_tokens",
    metadata,
    Column("digest", String(DIGEST_LENGTH), primary_key=True),
    Column("uid", BigInteger, nullable=False),
    Column("family", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=False, server_default=text("0")),
    Index("ix_session_tokens_uid", "uid"),
    Index("ix_session_tokens_family", "family"),
    Index("ix_session_tokens_expires_at", "expires_at"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

#: Lockout counters (`netbus.storage.lockout_sql`), keyed by a digest of the username key
#: or the source address. Times in unix milliseconds.
login_failures = Table(
    "login_failures",
    metadata,
    Column("subject", String(DIGEST_LENGTH), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("forget_at", BigInteger, nullable=False),
    Column("locked_until", BigInteger, nullable=False),
    Index("ix_login_failures_forget_at", "forget_at"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)
