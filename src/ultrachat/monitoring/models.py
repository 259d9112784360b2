"""Monitoring's table. Only code in ``ultrachat.monitoring`` reads or writes it.

One row per node per collection (every 60 s by default): the collected figures as JSON.
Monthly partitions in PostgreSQL, like the other time series, so retention drops months.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ultrachat.storage.base import Base
from ultrachat.storage.types import UTCDateTime


class MetricsSnapshot(Base):
    __tablename__ = "metrics_history"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    node: Mapped[str] = mapped_column(String(128))
    data: Mapped[str] = mapped_column(Text)  # JSON: system, app and business figures

    __table_args__ = (
        Index("ix_metrics_history_created_at", "created_at"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )
