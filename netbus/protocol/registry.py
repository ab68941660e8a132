"""BUF layouts per command and direction, built from declarations: `CodecRegistry`.

JSON bodies need no layout; a command without a BUF layout for a direction accepts JSON only
there (docs/protocol.md §5). A registry is **immutable**: it is built from what services
declare (`netbus.service` builds one per service from its ``@command`` declarations) and
passed to whoever encodes or decodes — a server, a session, a client. Registries combine with
``|``; two declarations of the same ``(stype, ctype, direction)`` with different layouts are
an error, so two services can never silently disagree about one command.

A registry also travels as a JSON *declaration* (`CodecRegistry.declaration`,
`CodecRegistry.from_declaration`), the form the browser client (``netbus.js``) and clients in
other languages read, so no client has to transcribe layouts by hand (docs/services.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from typing import Any, TypeAlias

from netbus.errors import LocalProtocolError, ProtocolError
from netbus.protocol.codec import (
    _KINDS,
    BodyCodec,
    FieldKind,
    FieldsCodec,
    Reader,
    ScalarCodec,
    StatusCodec,
    decode_json_body,
    encode_json_body,
)
from netbus.protocol.header import HEADER_SIZE, MAX_CMD_BUF, ProtoType, pack_header

__all__ = [
    "DECLARATION_FORMAT",
    "CodecRegistry",
    "Direction",
    "LayoutSpec",
    "describe_layout",
    "layout",
    "layout_from_description",
]

#: the ``"format"`` member of a JSON declaration (bumped if the shape ever changes)
DECLARATION_FORMAT = "netbus-codecs/1"


class Direction(IntEnum):
    """Which way a body travels; a command's BUF layout may differ per direction."""

    TO_SERVER = 0  #: client -> service (through the gateway), gateway -> service notices
    TO_CLIENT = 1  #: service -> client: replies and pushes


#: What a declaration may say for a BUF layout: a codec, a field kind (one bare value),
#: a sequence of ``(name, kind)`` pairs (a dict; empty = the empty body), or None (JSON only).
LayoutSpec: TypeAlias = BodyCodec | FieldKind | Sequence[tuple[str, FieldKind]] | None

_Key: TypeAlias = tuple[int, int, Direction]


def layout(spec: LayoutSpec) -> BodyCodec | None:
    """Normalise a declaration's layout shorthand to a codec (None stays None: JSON only).

    ``I16`` -> `ScalarCodec`; ``[("uname", STR), ("usex", I16)]`` -> `FieldsCodec`;
    ``[]`` -> the empty body; a codec (anything with ``encode``/``decode``) is used as is.

    Raises:
        ValueError: an unknown field kind or a malformed shorthand.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        return ScalarCodec(spec)
    if hasattr(spec, "encode") and hasattr(spec, "decode"):
        return spec
    fields = list(spec)
    for item in fields:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"BUF layout fields are (name, kind) pairs, got {item!r}")
    return FieldsCodec(*fields)


def describe_layout(codec: BodyCodec) -> dict[str, Any]:
    """The JSON form of a layout (docs/services.md, "Client codecs").

    Raises:
        LocalProtocolError: a custom codec that cannot describe itself (give it a
            ``describe()`` returning this JSON form, or use the built-in layouts).
    """
    if isinstance(codec, FieldsCodec):
        return {"fields": [[name, kind] for name, kind in codec.fields]}
    if isinstance(codec, ScalarCodec):
        return {"scalar": codec.kind}
    if isinstance(codec, StatusCodec):
        return {
            "status": codec.status_key,
            "ok": codec.ok,
            "fields": [[name, kind] for name, kind in codec.fields],
        }
    describe = getattr(codec, "describe", None)
    if describe is None:
        raise LocalProtocolError(f"layout {codec!r} has no JSON description")
    described: dict[str, Any] = describe()
    return described


def layout_from_description(doc: Any) -> BodyCodec:
    """The codec a JSON layout description stands for (inverse of `describe_layout`).

    Raises:
        ValueError: the description is not one of the documented forms.
    """
    if not isinstance(doc, dict):
        raise ValueError(f"a layout description is an object, got {doc!r}")
    if "scalar" in doc:
        return ScalarCodec(_kind(doc["scalar"]))
    fields = tuple((_name(f), _kind(f[1])) for f in _pairs(doc.get("fields")))
    if "status" in doc:
        ok = doc.get("ok")
        if type(ok) is not int:
            raise ValueError(f"status layout needs an integer 'ok', got {ok!r}")
        return StatusCodec(*fields, status_key=_name([doc["status"]]), ok=ok)
    if "fields" in doc:
        return FieldsCodec(*fields)
    raise ValueError(f"unknown layout description {doc!r}")


def _pairs(value: Any) -> list[Any]:
    if not isinstance(value, list) or not all(
        isinstance(f, list | tuple) and len(f) == 2 for f in value
    ):
        raise ValueError(f"'fields' is a list of [name, kind] pairs, got {value!r}")
    return value


def _name(pair: Sequence[Any]) -> str:
    if not isinstance(pair[0], str):
        raise ValueError(f"field name must be a string, got {pair[0]!r}")
    return pair[0]


def _kind(value: Any) -> FieldKind:
    if value not in _KINDS:
        raise ValueError(f"unknown BUF field kind {value!r}")
    kind: FieldKind = value
    return kind


class CodecRegistry:
    """Immutable BUF layouts per ``(stype, ctype, direction)``, plus whole-cmd_buf codecs.

    Args:
        layouts: the table; built by `CodecRegistry.of`, by services, or by ``|``.
    """

    __slots__ = ("_buf",)

    def __init__(self, layouts: Mapping[_Key, BodyCodec] | None = None) -> None:
        self._buf: dict[_Key, BodyCodec] = {
            (int(s), int(c), Direction(d)): codec for (s, c, d), codec in (layouts or {}).items()
        }

    @classmethod
    def of(cls, entries: Iterable[tuple[int, int, LayoutSpec, LayoutSpec]]) -> CodecRegistry:
        """Build from ``(stype, ctype, to_server, to_client)`` rows (layout shorthand allowed).

        Raises:
            ValueError: a row repeats an earlier ``(stype, ctype)`` with another layout.
        """
        table: dict[_Key, BodyCodec] = {}
        for stype, ctype, to_server, to_client in entries:
            sides = ((Direction.TO_SERVER, to_server), (Direction.TO_CLIENT, to_client))
            for direction, spec in sides:
                codec = layout(spec)
                if codec is not None:
                    _put(table, (stype, ctype, direction), codec)
        return cls(table)

    def __or__(self, other: CodecRegistry) -> CodecRegistry:
        """Both tables in one registry.

        Raises:
            ValueError: both hold the same key with different layouts.
        """
        if not isinstance(other, CodecRegistry):
            return NotImplemented
        table = dict(self._buf)
        for key, codec in other._buf.items():
            _put(table, key, codec)
        return CodecRegistry(table)

    def __iter__(self) -> Iterator[tuple[int, int, Direction]]:
        return iter(sorted(self._buf))

    def __len__(self) -> int:
        return len(self._buf)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodecRegistry):
            return NotImplemented
        return self.declaration() == other.declaration()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        stypes = sorted({s for s, _, _ in self._buf})
        return f"<CodecRegistry {len(self._buf)} layouts, stypes {stypes}>"

    def buf_codec(self, stype: int, ctype: int, direction: Direction) -> BodyCodec | None:
        return self._buf.get((stype, ctype, direction))

    def only(self, stypes: Iterable[int]) -> CodecRegistry:
        """The layouts of ``stypes`` alone (e.g. what a client of one service needs)."""
        keep = set(stypes)
        return CodecRegistry({k: c for k, c in self._buf.items() if k[0] in keep})

    # ------------------------------------------------------------------------- encoding
    def encode_body(
        self, stype: int, ctype: int, proto_type: int, body: Any, direction: Direction
    ) -> bytes:
        if proto_type == ProtoType.JSON:
            return encode_json_body(body)
        if proto_type == ProtoType.BUF:
            codec = self._buf.get((stype, ctype, direction))
            if codec is None:
                raise LocalProtocolError(f"({stype}, {ctype}) has no BUF layout {direction.name}")
            return codec.encode(body)
        raise LocalProtocolError(f"unknown proto_type {proto_type}")

    def encode(
        self,
        stype: int,
        ctype: int,
        body: Any,
        *,
        utag: int = 0,
        proto_type: int = ProtoType.JSON,
        direction: Direction,
    ) -> bytes:
        """Build a whole cmd_buf (header + body).

        Raises:
            LocalProtocolError: the body does not fit the layout or the cmd_buf is too long.
        """
        data = pack_header(stype, ctype, utag, proto_type) + self.encode_body(
            stype, ctype, proto_type, body, direction
        )
        if len(data) > MAX_CMD_BUF:
            raise LocalProtocolError(f"cmd_buf of {len(data)} bytes exceeds {MAX_CMD_BUF}")
        return data

    def decode_body(
        self,
        cmd_buf: bytes | bytearray | memoryview,
        stype: int,
        ctype: int,
        proto_type: int,
        direction: Direction,
    ) -> Any:
        """Decode the body of a cmd_buf whose header was already validated.

        Raises:
            ProtocolError: the body is malformed, or BUF was used where no layout exists.
        """
        if proto_type == ProtoType.JSON:
            return decode_json_body(cmd_buf, HEADER_SIZE)
        codec = self._buf.get((stype, ctype, direction))
        if codec is None:
            raise ProtocolError("no_buf_layout", f"({stype}, {ctype}) accepts JSON only")
        return codec.decode(Reader(cmd_buf, HEADER_SIZE))

    # --------------------------------------------------------------------- declarations
    def declaration(self) -> dict[str, Any]:
        """This registry as JSON-ready data, one entry per (stype, ctype)::

            {"format": "netbus-codecs/1",
             "layouts": [{"stype": 1, "ctype": 1,
                          "to_server": {"fields": [["uname", "str"], ["usex", "i16"]]},
                          "to_client": {"scalar": "i16"}}, ...]}

        Raises:
            LocalProtocolError: a custom layout cannot describe itself.
        """
        rows: dict[tuple[int, int], dict[str, Any]] = {}
        for stype, ctype, direction in sorted(self._buf):
            row = rows.setdefault((stype, ctype), {"stype": stype, "ctype": ctype})
            side = "to_server" if direction is Direction.TO_SERVER else "to_client"
            row[side] = describe_layout(self._buf[(stype, ctype, direction)])
        return {"format": DECLARATION_FORMAT, "layouts": list(rows.values())}

    @classmethod
    def from_declaration(cls, doc: Any) -> CodecRegistry:
        """The registry a declaration describes (what `declaration` produced).

        Raises:
            ValueError: not a netbus codec declaration, or a malformed entry.
        """
        if not isinstance(doc, dict) or doc.get("format") != DECLARATION_FORMAT:
            raise ValueError(f"not a {DECLARATION_FORMAT} declaration")
        rows = doc.get("layouts")
        if not isinstance(rows, list):
            raise ValueError("'layouts' must be a list")
        table: dict[_Key, BodyCodec] = {}
        for row in rows:
            if not isinstance(row, dict):
                raise ValueError(f"layout entry must be an object, got {row!r}")
            stype, ctype = row.get("stype"), row.get("ctype")
            if not all(type(n) is int and 0 <= n <= 0xFFFF for n in (stype, ctype)):
                raise ValueError(f"bad stype/ctype in {row!r}")
            assert isinstance(stype, int) and isinstance(ctype, int)  # for mypy, checked above
            for side, direction in _SIDES:
                if side in row:
                    _put(table, (stype, ctype, direction), layout_from_description(row[side]))
        return cls(table)


_SIDES = (("to_server", Direction.TO_SERVER), ("to_client", Direction.TO_CLIENT))


def _put(table: dict[_Key, BodyCodec], key: _Key, codec: BodyCodec) -> None:
    held = table.get(key)
    if held is not None and held is not codec and not _same_layout(held, codec):
        stype, ctype, direction = key
        raise ValueError(
            f"({stype}, {ctype}) {Direction(direction).name} is declared twice with different "
            f"BUF layouts"
        )
    table[key] = codec


def _same_layout(a: BodyCodec, b: BodyCodec) -> bool:
    try:
        return describe_layout(a) == describe_layout(b)
    except LocalProtocolError:
        return False
