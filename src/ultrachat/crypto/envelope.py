"""The ciphertext format every sealed column stores, and what binds it to its row.

    version (1 byte) | data key id (4 bytes, big-endian) | nonce (12 bytes) | AES-GCM output

The AES-GCM output is the ciphertext followed by its 16-byte tag. The associated data is the
5-byte header plus the column's binding (``table.column``, a NUL, the row's id), so a
ciphertext fails to open if its header is edited, if it is copied to another row or column,
or if any bit of it flips. Nonces are 96 random bits per encryption (NIST SP 800-38D §8.2.2);
the key ring rotates keys long before the 2^32 encryptions that allows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

VERSION = 1
HEADER = struct.Struct(">BI")
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = HEADER.size + NONCE_BYTES + TAG_BYTES


class CorruptCiphertext(Exception):
    """A stored ciphertext failed to open: edited, truncated, moved, or under a lost key."""

    def __init__(self, column: SealedColumn, row_id: str, reason: str) -> None:
        super().__init__(f"{column.name} of row {row_id!r} is corrupt: {reason}")
        self.column = column
        self.row_id = row_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """A column that stores ciphertext: its table, its name, and how its rows are named.

    ``row_keys`` (the primary key, or its leading columns) name the row: their values,
    joined by "/", are the row id bound into each ciphertext, and the re-wrap job walks the
    table in their order. ``locator_keys`` are further key columns that an update must also
    match, such as a partitioning timestamp derived from the id (``messages.created_at``):
    they let PostgreSQL prune to one partition but are not bound, since they add nothing.
    """

    table: str
    column: str
    row_keys: tuple[str, ...]
    locator_keys: tuple[str, ...] = ()
    # "table.column" and a NUL, encoded once: every seal and open of the column starts so.
    binding_prefix: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "binding_prefix", f"{self.table}.{self.column}\x00".encode())

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Every column that locates a row: the row keys, then the locator keys."""
        return self.row_keys + self.locator_keys

    def row_id(self, key: tuple[object, ...]) -> str:
        """The bound id of a row, from its ``key_columns`` values (or just its row keys)."""
        return "/".join(str(part) for part in key[: len(self.row_keys)])

    def binding(self, row_id: str) -> bytes:
        return self.binding_prefix + row_id.encode()


def header(key_id: int) -> bytes:
    return HEADER.pack(VERSION, key_id)


def key_id_of(column: SealedColumn, row_id: str, blob: bytes) -> int:
    """The data key a ciphertext names; CorruptCiphertext if it is not one of ours."""
    if len(blob) < OVERHEAD:
        raise CorruptCiphertext(column, row_id, f"too short ({len(blob)} bytes)")
    version, key_id = HEADER.unpack_from(blob)
    if version != VERSION:
        raise CorruptCiphertext(column, row_id, f"unknown format version {version}")
    return int(key_id)
