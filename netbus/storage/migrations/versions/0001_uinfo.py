"""Create the uinfo account table.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The original framework's account table, plus ``guest_key`` (HMAC digest, UNIQUE),
``status`` and unix-second timestamps. Frozen history: columns are spelled out here rather
than imported from netbus.storage.schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__ = ["branch_labels", "depends_on", "down_revision", "downgrade", "revision", "upgrade"]

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "uinfo",
        sa.Column(
            "uid",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("unick", sa.String(64), nullable=False, server_default=""),
        sa.Column("uname", sa.String(64), nullable=True),
        sa.Column("upwd", sa.String(128), nullable=True),
        sa.Column("usex", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("uface", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("uphone", sa.String(32), nullable=True),
        sa.Column("uemail", sa.String(128), nullable=True),
        sa.Column("ucity", sa.String(64), nullable=True),
        sa.Column("guest_key", sa.String(64), nullable=True),
        sa.Column(
            "is_guest",
            sa.Boolean(create_constraint=False),
            nullable=False,
            server_default=sa.text("0"),
        ),
        sa.Column("uvip", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("vip_endtime", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("status", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_login_at", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.CheckConstraint("usex IN (0, 1)", name=op.f("ck_uinfo_usex")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index(op.f("ix_uinfo_guest_key"), "uinfo", ["guest_key"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_uinfo_guest_key"), table_name="uinfo")
    op.drop_table("uinfo")
