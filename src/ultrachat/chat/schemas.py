"""Request and response bodies of the chat API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ultrachat.errors import InvalidInput


def ensure_storable(field: str, value: str | None) -> None:
    """Refuse text that cannot be stored as given: PostgreSQL rejects the NUL character.

    Services call this (not a schema validator) so that every entry point, REST and
    WebSocket alike, refuses it with ``invalid_input`` instead of failing in the database.
    """
    if value is not None and "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters")


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Seqs are 64-bit integers in the database (BIGINT; SQLite's INTEGER): a larger number could
# not even be compared with one there, so the API refuses it.
MAX_SEQ = 2**63 - 1
# A channel's unread count stops here: 100 means "100 or more" (clients show "99+").
MAX_UNREAD_COUNT = 100

# A channel name as the service takes it: not blank, no control characters (surrounding
# whitespace is trimmed). The service also refuses what Python does not call printable, such
# as unassigned code points, which a pattern cannot say.
CHANNEL_NAME = r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?\s*$"


def _integral_number(value: object) -> object:
    """JSON has one number type: ``5.0`` is the integer 5 (JSON Schema's ``integer`` agrees)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer in a strict body: no strings or booleans, but any JSON spelling of an integer.
JsonInt = Annotated[int, BeforeValidator(_integral_number)]


class ChannelCreate(StrictBody):
    # The service's rule, stated for clients and fuzzers (the service checks it, with a
    # clearer message than a schema error): a public or private channel needs a name; a DM
    # has none (a name given is ignored).
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "dm"}}},
            "else": {
                "required": ["name"],
                "properties": {"name": {"type": "string", "pattern": CHANNEL_NAME}},
            },
        }
    )

    name: str | None = Field(default=None, min_length=1, max_length=80)
    kind: Literal["public", "private", "dm"]
    topic: str = Field(default="", max_length=250)
    member_ids: list[str] = Field(default_factory=list, max_length=1000)


class ChannelPatch(StrictBody):
    name: str | None = Field(default=None, min_length=1, max_length=80)
    topic: str | None = Field(default=None, max_length=250)
    archived: bool | None = None


class MemberAdd(StrictBody):
    user_id: str = Field(min_length=1, max_length=36)


class MemberRole(StrictBody):
    role: Literal["admin", "member"]


class MessageCreate(StrictBody):
    body: str = Field(min_length=1, max_length=4000)
    client_msg_id: str | None = Field(default=None, min_length=1, max_length=64)
    thread_id: str | None = Field(default=None, min_length=1, max_length=36)


class MessageEdit(StrictBody):
    body: str = Field(min_length=1, max_length=4000)


class ReadMarker(StrictBody):
    seq: JsonInt = Field(ge=0, le=MAX_SEQ)


class ReactionOut(BaseModel):
    emoji: str
    count: int
    user_ids: list[str]


class MessageOut(BaseModel):
    id: str
    channel_id: str
    seq: int
    user_id: str
    body: str | None
    thread_id: str | None
    created_at: str
    edited_at: str | None
    deleted: bool
    mentions: list[str]
    reactions: list[ReactionOut]
    pinned: bool
    corrupt: bool = Field(
        False, description="The stored body failed to decrypt (tampered or lost key); body is null."
    )


class MessagePage(BaseModel):
    messages: list[MessageOut]


class ChannelOut(BaseModel):
    id: str
    name: str | None
    kind: str
    topic: str
    created_by: str
    created_at: str
    archived: bool
    last_seq: int
    member_ids: list[str] | None = None
    role: str | None = None
    last_read_seq: int | None = None
    unread_count: int | None = Field(
        None, description=f"unread messages by others, counted up to {MAX_UNREAD_COUNT}"
    )
    mention_count: int | None = None


class ChannelList(BaseModel):
    channels: list[ChannelOut]


class MemberOut(BaseModel):
    user_id: str
    role: str
    joined_at: str


class MemberList(BaseModel):
    members: list[MemberOut]
