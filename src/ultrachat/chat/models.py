"""Chat's tables. Only code in ``ultrachat.chat`` reads or writes them.

``channel_events`` is the per-channel log that real-time delivery replays from: every
persistent event gets the channel's next ``seq`` in the same transaction that stores it.
``messages`` holds each message's current state; in PostgreSQL it is range-partitioned by
month on ``created_at`` (see the migration), which is why its keys include ``created_at``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ultrachat.storage.base import Base
from ultrachat.storage.types import UTCDateTime

SeqInt = BigInteger().with_variant(Integer(), "sqlite")


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # public | private | dm
    name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    topic: Mapped[str] = mapped_column(String(250), default="")
    # For DMs: the sorted member ids, so that one set of users has one DM.
    dm_key: Mapped[str | None] = mapped_column(String(400), nullable=True, unique=True)
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seq: Mapped[int] = mapped_column(SeqInt, default=0)


class ChannelMember(Base):
    __tablename__ = "channel_members"

    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))  # owner | admin | member
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_read_seq: Mapped[int] = mapped_column(SeqInt, default=0)

    __table_args__ = (Index("ix_channel_members_user_id", "user_id"),)


class ChannelEvent(Base):
    __tablename__ = "channel_events"

    channel_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(SeqInt, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str] = mapped_column(String(36))
    subject_id: Mapped[str] = mapped_column(String(36), default="")
    # The event's JSON exactly as delivered, sealed (chat/sealing.py): it holds message bodies.
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Equal to the UUIDv7 id's timestamp, so a lookup by id knows its partition.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(SeqInt)
    user_id: Mapped[str] = mapped_column(String(36))
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # sealed
    thread_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    client_msg_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_messages_channel_id_seq", "channel_id", "seq", unique=True),
        Index("ix_messages_thread_id", "thread_id"),
        Index("ix_messages_user_id", "user_id"),
        Index("ix_messages_created_at", "created_at"),
    )


class MessageClientId(Base):
    """Idempotency: one row per (channel, sender, client_msg_id), pointing at the message."""

    __tablename__ = "message_client_ids"

    channel_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_msg_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Reaction(Base):
    __tablename__ = "reactions"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    emoji: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Pin(Base):
    __tablename__ = "pins"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(36))
    pinned_by: Mapped[str] = mapped_column(String(36))
    pinned_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_pins_channel_id", "channel_id"),)


class Mention(Base):
    __tablename__ = "mentions"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(SeqInt)

    __table_args__ = (Index("ix_mentions_user_channel_seq", "user_id", "channel_id", "seq"),)
