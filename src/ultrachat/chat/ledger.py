"""Commit a channel event: take the next seq, write, then announce it on the bus.

Every persistent change to a channel goes through ``ChannelLedger.commit`` so that the seq,
the change itself and the event row land in one transaction (all or nothing), and the bus
hears about it only after the commit. The database is the truth; the bus is the news.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.bus import Bus
from ultrachat.chat import repository
from ultrachat.chat.caching import ChatCache
from ultrachat.chat.events import channel_topic, event_frame, wrap
from ultrachat.chat.models import ChannelEvent
from ultrachat.chat.sealing import ChatSealer
from ultrachat.errors import NotFound
from ultrachat.metrics.chat import EVENTS_COMMITTED, EVENTS_UNANNOUNCED
from ultrachat.storage import Database

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """What a write produced: the event to record, and the value to hand back to the caller."""

    kind: str
    data: dict[str, Any]
    subject: str = ""


class NoChange(Exception):
    """Raised by a write that turned out to change nothing; the seq is given back."""

    def __init__(self, result: object = None) -> None:
        self.result = result


@dataclass(frozen=True, slots=True)
class Committed:
    channel_id: str
    seq: int
    kind: str
    frame: str
    data: dict[str, Any]


Write = Callable[[AsyncSession, int, datetime], Awaitable[Change]]


class ChannelLedger:
    def __init__(
        self, db: Database, bus: Bus, sealer: ChatSealer, cache: ChatCache | None = None
    ) -> None:
        self._db = db
        self._bus = bus
        # Encrypts bodies and frames on their way into the database (chat/sealing.py).
        self.sealer = sealer
        # The services' read cache; every committed change goes through it.
        self.cache = cache or ChatCache(None)

    async def commit(self, channel_id: str, actor_id: str, write: Write) -> Committed:
        """Run ``write`` under the channel's next seq and record its event; bring the cache
        up to date with it (chat/caching.py), on every node; then publish."""
        now = datetime.now(UTC)
        async with self._db.transaction() as session:
            seq = await repository.next_seq(session, channel_id)
            if seq is None:
                raise NotFound("channel not found")
            change = await write(session, seq, now)
            frame = event_frame(channel_id, seq, change.kind, change.data)
            await repository.add_event(
                session,
                ChannelEvent(
                    channel_id=channel_id,
                    seq=seq,
                    kind=change.kind,
                    actor_id=actor_id,
                    subject_id=change.subject,
                    data=self.sealer.seal_frame(channel_id, seq, frame),
                    created_at=now,
                ),
            )
        committed = Committed(channel_id, seq, change.kind, frame, change.data)
        EVENTS_COMMITTED.labels(change.kind).inc()
        # Before the announce and the caller's answer: nobody hears of it from a stale cache.
        await self.cache.changed(channel_id, seq, change.kind, change.subject, change.data)
        await self.announce(committed, change.subject)
        return committed

    async def announce_many(self, committed: list[Committed]) -> None:
        """Publish a batch's events in seq order, in one round trip to the bus."""
        try:
            await self._bus.publish_many(
                [(channel_topic(c.channel_id), wrap(c.seq, c.kind, "", c.frame)) for c in committed]
            )
        except Exception:
            log.warning("publish of %d events failed; subscribers replay them", len(committed))
            EVENTS_UNANNOUNCED.inc(len(committed))

    async def announce(self, committed: Committed, subject: str = "") -> None:
        # A failed publish loses nothing: subscribers see the gap at the next event (or on
        # reconnect) and replay it from the log.
        try:
            await self._bus.publish(
                channel_topic(committed.channel_id),
                wrap(committed.seq, committed.kind, subject, committed.frame),
            )
        except Exception:
            log.warning("publish of %s/%d failed", committed.channel_id, committed.seq)
            EVENTS_UNANNOUNCED.inc()
