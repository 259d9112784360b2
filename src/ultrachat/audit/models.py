"""Audit's tables. Only code in ``ultrachat.audit`` reads or writes them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ultrachat.storage.base import Base
from ultrachat.storage.types import UTCDateTime


class AuditRecord(Base):
    """One security event. Append-only; ``hash`` chains it to the record before it (by seq).

    Monthly partitions in PostgreSQL: the primary key includes the partition key, created_at.
    """

    __tablename__ = "audit_log"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(48))
    actor_id: Mapped[str] = mapped_column(String(36), default="")
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[str] = mapped_column(String(128), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(128), default="")
    # Canonical JSON text (sorted keys); hashed as stored.
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_seq", "seq"),
        Index("ix_audit_log_actor_id", "actor_id", "created_at"),
        Index("ix_audit_log_event", "event", "created_at"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )


class AuditHead(Base):
    """The chain's head: one row (id 1), locked by every append, so appends take turns."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
