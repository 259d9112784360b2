"""Channel events on the wire and on the bus.

An event is encoded once, when it is committed: the JSON frame that clients receive is
stored in ``channel_events.data`` (so replay sends it as is) and published on the bus behind
a small header that lets each node route it without parsing JSON:

    b"<seq>|<kind>|<subject user id>|" + frame

Ephemeral events (typing, presence) use seq 0 and are never stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import orjson

SESSIONS_REVOKED_TOPIC = "sessions.revoked"

# Kinds whose subject stops receiving the channel after the event.
MEMBER_LEFT = "member.left"
MEMBER_JOINED = "member.joined"
TYPING = "typing"
PRESENCE = "presence"


def channel_topic(channel_id: str) -> str:
    return f"channel:{channel_id}"


def user_topic(user_id: str) -> str:
    return f"user:{user_id}"


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def event_frame(channel_id: str, seq: int, kind: str, data: dict[str, Any]) -> str:
    return orjson.dumps(
        {"type": "event", "channel_id": channel_id, "seq": seq, "event": kind, "data": data}
    ).decode()


class Envelope(NamedTuple):
    seq: int
    kind: str
    subject: str
    frame: str


def wrap(seq: int, kind: str, subject: str, frame: str) -> bytes:
    return f"{seq}|{kind}|{subject}|{frame}".encode()


def unwrap(payload: bytes) -> Envelope:
    seq, kind, subject, frame = payload.decode().split("|", 3)
    return Envelope(int(seq), kind, subject, frame)
