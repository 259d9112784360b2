"""Read access to the channel event log for real-time replay (chat's public interface)."""

from __future__ import annotations

from collections.abc import Sequence

from ultrachat.chat import repository
from ultrachat.chat.events import Envelope
from ultrachat.storage import Database


class ChannelLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def after(self, channel_id: str, after_seq: int, limit: int) -> list[Envelope]:
        """Events with seq > ``after_seq`` in order, at most ``limit``."""
        async with self._db.sessions() as session:
            rows = await repository.events_after(session, channel_id, after_seq, limit)
        return [Envelope(row.seq, row.kind, row.subject_id, row.data) for row in rows]

    async def heads(self, channel_ids: Sequence[str]) -> dict[str, int]:
        """Each channel's newest committed seq."""
        async with self._db.sessions() as session:
            return await repository.current_seqs(session, channel_ids)
