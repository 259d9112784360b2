"""Chat's encrypted columns: message bodies and event frames (crypto/, docs/security.md).

Bodies are sealed to their message id, frames to their (channel, seq): a ciphertext moved to
another row does not open. Opening is batched per page, so a page under a key another node
made a moment ago costs one key reload, not one per row; a row that fails to open comes
back as a ``CorruptCiphertext`` for the caller to report, never as empty text.
"""

from __future__ import annotations

from collections.abc import Sequence

from ultrachat.crypto import CorruptCiphertext, DataKeyRing
from ultrachat.crypto.columns import EVENT_DATA, MESSAGE_BODY


def event_row_id(channel_id: str, seq: int) -> str:
    return f"{channel_id}/{seq}"


class ChatSealer:
    def __init__(self, ring: DataKeyRing) -> None:
        self._ring = ring

    def seal_body(self, message_id: str, body: str) -> bytes:
        return self._ring.encrypt_text(MESSAGE_BODY, message_id, body)

    def seal_bodies(self, bodies: Sequence[tuple[str, str]]) -> list[bytes]:
        """(message id, body) pairs, sealed in one go (the group commit's batch)."""
        return self._ring.encrypt_many(MESSAGE_BODY, bodies)

    def seal_frames(self, frames: Sequence[tuple[str, int, str]]) -> list[bytes]:
        """(channel id, seq, frame) triples, sealed in one go."""
        return self._ring.encrypt_many(
            EVENT_DATA, [(event_row_id(c, seq), frame) for c, seq, frame in frames]
        )

    def seal_frame(self, channel_id: str, seq: int, frame: str) -> bytes:
        return self._ring.encrypt_text(EVENT_DATA, event_row_id(channel_id, seq), frame)

    async def open_bodies(
        self, rows: Sequence[tuple[str, bytes | None]]
    ) -> list[str | CorruptCiphertext | None]:
        """(message id, sealed body or None) pairs, opened in place."""
        sealed = [(i, blob) for i, blob in rows if blob is not None]
        opened = iter(await self._ring.decrypt_many(MESSAGE_BODY, sealed))
        return [None if blob is None else next(opened) for _, blob in rows]

    async def open_frames(
        self, channel_id: str, rows: Sequence[tuple[int, bytes]]
    ) -> list[str | CorruptCiphertext]:
        """(seq, sealed frame) pairs of one channel, opened in place."""
        return await self._ring.decrypt_many(
            EVENT_DATA, [(event_row_id(channel_id, seq), blob) for seq, blob in rows]
        )
