"""Channel heads for new feeds, read in batches.

A feed starts from its channel's newest seq, read once when the node's first subscriber of
that channel arrives. When thousands of clients connect at once (a node restarting, its
clients resuming elsewhere) each joins several channels, and one query per new feed would
queue on the database pool until handshakes time out. Requests made while a read is under
way are gathered and answered by the next read, one query for all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

ReadHeads = Callable[[Sequence[str]], Awaitable[dict[str, int]]]
MAX_BATCH = 1000  # channel ids per query


class HeadReader:
    def __init__(self, read: ReadHeads) -> None:
        self._read = read
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def head(self, channel_id: str) -> int:
        """The channel's newest committed seq (0 for a channel with no events)."""
        future = self._waiting.get(channel_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            # Retrieved here too, for when every caller was cancelled meanwhile.
            future.add_done_callback(_retrieve)
            self._waiting[channel_id] = future
            if self._reader is None:
                self._reader = asyncio.get_running_loop().create_task(self._read_all())
        return await asyncio.shield(future)  # one caller's cancellation is not the others'

    async def _read_all(self) -> None:
        try:
            while self._waiting:
                batch = dict(list(self._waiting.items())[:MAX_BATCH])
                for channel_id in batch:
                    del self._waiting[channel_id]
                try:
                    heads = await self._read(list(batch))
                except Exception as exc:
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for channel_id, future in batch.items():
                    if not future.done():
                        future.set_result(heads.get(channel_id, 0))
        finally:
            self._reader = None


def _retrieve(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()
