"""Billing's tables. Only code in ``ultrachat.billing`` reads or writes them.

Money is integer minor units (cents) in one currency per plan, never floats.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ultrachat.storage.base import Base
from ultrachat.storage.types import UTCDateTime


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    monthly_price_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Subscription(Base):
    """A customer on a plan from ``started_at`` until ``cancelled_at`` (exclusive)."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    customer: Mapped[str] = mapped_column(String(120))
    # The plan's price when subscribed: a later price change does not rewrite history.
    monthly_price_cents: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_subscriptions_started_at", "started_at"),
        Index("ix_subscriptions_cancelled_at", "cancelled_at"),
    )
