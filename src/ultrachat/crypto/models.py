"""The crypto tables: wrapped data keys, and the re-wrap job's progress."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ultrachat.storage.base import Base
from ultrachat.storage.types import UTCDateTime

PRIMARY = "primary"  # encrypts new data; exactly one
ACTIVE = "active"  # decrypts; the re-wrap job moves its rows to the primary
RETIRED = "retired"  # no rows left; its key material is erased


class DataKey(Base):
    """An AES-256 data key, wrapped by the master key (``kek_id`` says which one)."""

    __tablename__ = "data_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    state: Mapped[str] = mapped_column(String(8))
    kek_id: Mapped[str] = mapped_column(String(32))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Encryptions reserved from this key by all nodes so far (nodes reserve in blocks).
    uses: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index(
            "uq_data_keys_one_primary",
            "state",
            unique=True,
            postgresql_where=text("state = 'primary'"),
            sqlite_where=text("state = 'primary'"),
        ),
    )


class RewrapRun(Base):
    """One sealed column's re-wrap to ``target_key_id``: a cursor, counts, and a lease.

    Rows and this progress commit in the same transaction, so a crashed job resumes exactly
    after the last batch it finished.
    """

    __tablename__ = "rewrap_runs"

    column_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_key_id: Mapped[int] = mapped_column(Integer)
    cursor: Mapped[str | None] = mapped_column(String(400), nullable=True)  # JSON key
    scanned: Mapped[int] = mapped_column(BigInteger, default=0)
    rewrapped: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)  # an estimate, for progress
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
