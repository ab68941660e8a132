"""The uinfo table definition, compiled for each dialect (no database needed)."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from netbus.storage import MAX_UID, metadata, uinfo
from netbus.storage.schema import GUEST_KEY_HASH_LENGTH


def test_max_uid_leaves_the_utag_top_bit_free() -> None:
    assert MAX_UID == 0x7FFF_FFFF


def test_table_is_registered_and_keyed_by_uid() -> None:
    assert metadata.tables["uinfo"] is uinfo
    assert [c.name for c in uinfo.primary_key] == ["uid"]
    assert uinfo.c.uid.autoincrement is True


@pytest.mark.parametrize(
    ("dialect", "uid_type"),
    [(sqlite.dialect(), "INTEGER"), (mysql.dialect(), "BIGINT")],
)
def test_uid_type_per_dialect(dialect: object, uid_type: str) -> None:
    ddl = str(CreateTable(uinfo).compile(dialect=dialect))  # type: ignore[arg-type]
    assert f"uid {uid_type} NOT NULL" in ddl


def test_mysql_table_is_innodb_utf8mb4() -> None:
    ddl = str(CreateTable(uinfo).compile(dialect=mysql.dialect()))
    assert "ENGINE=InnoDB" in ddl
    assert "CHARSET=utf8mb4" in ddl
    assert "AUTO_INCREMENT" in ddl


def test_guest_key_is_a_unique_nullable_digest_column() -> None:
    column = uinfo.c.guest_key
    assert column.type.length == GUEST_KEY_HASH_LENGTH == 64  # type: ignore[attr-defined]
    assert column.nullable
    [index] = [i for i in uinfo.indexes if list(i.columns) == [column]]
    assert index.unique
    assert "CREATE UNIQUE INDEX ix_uinfo_guest_key" in str(CreateIndex(index))


@pytest.mark.parametrize(
    "name", ["usex", "uface", "uvip", "vip_endtime", "status", "created_at", "last_login_at"]
)
def test_numeric_columns_default_to_zero(name: str) -> None:
    column = uinfo.c[name]
    assert not column.nullable
    assert str(column.server_default.arg) == "0"  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["uname", "upwd", "uphone", "uemail", "ucity"])
def test_optional_profile_columns_are_nullable(name: str) -> None:
    assert uinfo.c[name].nullable
