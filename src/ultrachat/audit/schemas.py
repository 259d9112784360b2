"""Response bodies of the admin audit API, and the time bounds it (and the CLI) accept."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from ultrachat.audit.chain import utc_iso
from ultrachat.audit.models import AuditRecord


class AuditRecordOut(BaseModel):
    id: str
    seq: int
    created_at: datetime
    event: str
    actor_id: str
    target_type: str
    target_id: str
    ip: str
    request_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    records: list[AuditRecordOut]


def record_out(record: AuditRecord) -> AuditRecordOut:
    return AuditRecordOut(
        id=record.id,
        seq=record.seq,
        created_at=record.created_at,
        event=record.event,
        actor_id=record.actor_id,
        target_type=record.target_type,
        target_id=record.target_id,
        ip=record.ip,
        request_id=record.request_id,
        details=orjson.loads(record.details),
        prev_hash=record.prev_hash,
        hash=record.hash,
    )


def record_json(record: AuditRecord) -> dict[str, Any]:
    """One line of ``ultrachat audit export``: every column, times in UTC ISO 8601."""
    body = record_out(record).model_dump()
    body["created_at"] = utc_iso(record.created_at)
    return body


def parse_moment(value: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 time (UTC when it names no offset)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a date or ISO 8601 time: {value!r} (e.g. 2026-11-01 or 2026-11-01T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
