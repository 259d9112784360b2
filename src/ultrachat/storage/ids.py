"""Time-ordered ids (UUIDv7, RFC 9562) as strings.

The standard library gains ``uuid.uuid7`` only in Python 3.14; until then this is the
RFC's layout: 48 bits of Unix milliseconds, the version and variant bits, 74 random bits.
Time order lets an id's month be found without a lookup (partition pruning by id).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, datetime

_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_id() -> str:
    """A new UUIDv7 string; ids made later sort after ids made earlier (to the millisecond)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def id_timestamp(value: str) -> datetime:
    """The creation time encoded in a UUIDv7 string."""
    millis = uuid.UUID(value).int >> 80
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id we make; check client input before querying."""
    return _ID_RE.fullmatch(value) is not None
