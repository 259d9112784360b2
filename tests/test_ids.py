"""Time-ordered ids: valid UUIDv7, ordered by time, and the time recoverable from the id."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from ultrachat.storage.ids import id_timestamp, is_id, new_id


def test_ids_are_uuid7_strings() -> None:
    for _ in range(200):
        value = new_id()
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert is_id(value)


def test_ids_sort_by_creation_time_and_carry_it() -> None:
    before = datetime.now(UTC)
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first < second
    assert abs((id_timestamp(first) - before).total_seconds()) < 1


@pytest.mark.parametrize("bad", ["", "nope", "01a216a6-76fc-70cf-a528", "x" * 36, "\x00" * 36])
def test_malformed_ids_are_refused(bad: str) -> None:
    assert not is_id(bad)
    with pytest.raises(ValueError, match="not an id"):
        id_timestamp(bad)
