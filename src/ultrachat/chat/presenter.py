"""Turn rows into the JSON shapes of the API and of events (one shape for both)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from ultrachat.chat.events import iso
from ultrachat.chat.models import Channel, ChannelMember
from ultrachat.crypto import CorruptCiphertext


class MessageFields(Protocol):
    """What a message's JSON is made from: a stored row, or one about to be stored."""

    id: str
    channel_id: str
    seq: int
    user_id: str
    thread_id: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None


def message_dict(
    message: MessageFields,
    body: str | CorruptCiphertext | None,
    mentions: list[str] | None = None,
    reactions: dict[str, list[str]] | None = None,
    pinned: bool = False,
) -> dict[str, Any]:
    deleted = message.deleted_at is not None
    # A body that failed to open is reported as such (and logged by the key ring), never
    # passed off as an empty message.
    corrupt = isinstance(body, CorruptCiphertext)
    return {
        "id": message.id,
        "channel_id": message.channel_id,
        "seq": message.seq,
        "user_id": message.user_id,
        "body": None if deleted or isinstance(body, CorruptCiphertext) else body,
        "thread_id": message.thread_id,
        "created_at": iso(message.created_at),
        "edited_at": iso(message.edited_at),
        "deleted": deleted,
        "mentions": [] if deleted else (mentions or []),
        "reactions": []
        if deleted
        else [
            {"emoji": emoji, "count": len(users), "user_ids": users}
            for emoji, users in (reactions or {}).items()
        ],
        "pinned": pinned and not deleted,
        "corrupt": corrupt,
    }


def channel_dict(channel: Channel, member_ids: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": channel.id,
        "name": channel.name,
        "kind": channel.kind,
        "topic": channel.topic,
        "created_by": channel.created_by,
        "created_at": iso(channel.created_at),
        "archived": channel.archived_at is not None,
        "last_seq": channel.last_seq,
        "member_ids": member_ids,
    }


def member_dict(member: ChannelMember) -> dict[str, Any]:
    return {"user_id": member.user_id, "role": member.role, "joined_at": iso(member.joined_at)}
