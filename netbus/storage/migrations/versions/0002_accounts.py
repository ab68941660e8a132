"""Accounts: username key, resume tokens, lockout counters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Adds ``uinfo.uname_key`` (the normalised username, UNIQUE, binary collation on MySQL and
MariaDB) and the ``session_tokens`` and ``login_failures`` tables. Existing rows keep every
value; ``uname_key`` starts NULL, so no existing account has a password login until one is
registered (the original framework never filled ``uname``/``upwd``). Frozen history: columns
are spelled out here rather than imported from netbus.storage.schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

__all__ = ["branch_labels", "depends_on", "down_revision", "downgrade", "revision", "upgrade"]

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("uinfo") as batch:
        batch.add_column(
            sa.Column(
                "uname_key",
                sa.String(128).with_variant(
                    mysql.VARCHAR(128, collation="utf8mb4_bin"), "mysql", "mariadb"
                ),
                nullable=True,
            )
        )
        batch.create_index(op.f("ix_uinfo_uname_key"), ["uname_key"], unique=True)
    op.create_table(
        "session_tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index(op.f("ix_session_tokens_uid"), "session_tokens", ["uid"])
    op.create_index(op.f("ix_session_tokens_family"), "session_tokens", ["family"])
    op.create_index(op.f("ix_session_tokens_expires_at"), "session_tokens", ["expires_at"])
    op.create_table(
        "login_failures",
        sa.Column("subject", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("forget_at", sa.BigInteger(), nullable=False),
        sa.Column("locked_until", sa.BigInteger(), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index(op.f("ix_login_failures_forget_at"), "login_failures", ["forget_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_login_failures_forget_at"), table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index(op.f("ix_session_tokens_expires_at"), table_name="session_tokens")
    op.drop_index(op.f("ix_session_tokens_family"), table_name="session_tokens")
    op.drop_index(op.f("ix_session_tokens_uid"), table_name="session_tokens")
    op.drop_table("session_tokens")
    with op.batch_alter_table("uinfo") as batch:
        batch.drop_index(op.f("ix_uinfo_uname_key"))
        batch.drop_column("uname_key")
