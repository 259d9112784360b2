"""The hash chain: canonical content of a record and its SHA-256."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def content(
    *,
    id: str,
    seq: int,
    created_at: datetime,
    event: str,
    actor_id: str,
    target_type: str,
    target_id: str,
    ip: str,
    request_id: str,
    details: str,
) -> dict[str, Any]:
    """What the hash covers: every column but the hashes themselves."""
    return {
        "id": id,
        "seq": seq,
        "created_at": utc_iso(created_at),
        "event": event,
        "actor_id": actor_id,
        "target_type": target_type,
        "target_id": target_id,
        "ip": ip,
        "request_id": request_id,
        "details": details,
    }


def chain_hash(prev_hash: str, record_content: dict[str, Any]) -> str:
    """SHA-256 (hex) of the previous hash followed by the record's canonical JSON."""
    data = (prev_hash + canonical_json(record_content)).encode()
    return hashlib.sha256(data).hexdigest()
