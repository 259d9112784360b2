"""Read access to the channel event log for real-time replay (chat's public interface)."""

from __future__ import annotations

from collections.abc import Sequence

from ultrachat.chat import repository
from ultrachat.chat.events import Envelope, event_frame
from ultrachat.chat.sealing import ChatSealer
from ultrachat.crypto import CorruptCiphertext
from ultrachat.storage import Database

# Replayed in place of an event whose stored frame failed to decrypt: the seq stays
# contiguous (no client waits for it forever) and the damage is visible, not hidden.
CORRUPT_EVENT = "event.corrupt"


class ChannelLog:
    def __init__(self, db: Database, sealer: ChatSealer) -> None:
        self._db = db
        self._sealer = sealer

    async def after(self, channel_id: str, after_seq: int, limit: int) -> list[Envelope]:
        """Events with seq > ``after_seq`` in order, at most ``limit``."""
        async with self._db.sessions() as session:
            rows = await repository.events_after(session, channel_id, after_seq, limit)
        frames = await self._sealer.open_frames(channel_id, [(row.seq, row.data) for row in rows])
        return [
            Envelope(row.seq, row.kind, row.subject_id, frame)
            if not isinstance(frame, CorruptCiphertext)
            else Envelope(
                row.seq,
                CORRUPT_EVENT,
                row.subject_id,
                event_frame(channel_id, row.seq, CORRUPT_EVENT, {"kind": row.kind}),
            )
            for row, frame in zip(rows, frames, strict=True)
        ]

    async def heads(self, channel_ids: Sequence[str]) -> dict[str, int]:
        """Each channel's newest committed seq."""
        async with self._db.sessions() as session:
            return await repository.current_seqs(session, channel_ids)
