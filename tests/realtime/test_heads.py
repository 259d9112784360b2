"""HeadReader: concurrent requests for channel heads share queries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ultrachat.realtime.heads import HeadReader


class Log:
    def __init__(self, heads: dict[str, int], fail: bool = False) -> None:
        self.heads = heads
        self.queries: list[list[str]] = []
        self.fail = fail

    async def read(self, channel_ids: Sequence[str]) -> dict[str, int]:
        self.queries.append(list(channel_ids))
        await asyncio.sleep(0.01)  # a query in flight while more requests arrive
        if self.fail:
            raise ConnectionError("database down")
        return {c: self.heads[c] for c in channel_ids if c in self.heads}


async def test_requests_made_together_share_one_query_and_each_gets_its_head() -> None:
    log = Log({f"c{i}": i for i in range(50)})
    reader = HeadReader(log.read)
    wanted = [f"c{i}" for i in range(50)] * 3 + ["new"]
    heads = await asyncio.gather(*(reader.head(c) for c in wanted))
    assert heads == [i for _ in range(3) for i in range(50)] + [0]  # unknown channel: 0
    assert len(log.queries) == 1 and sorted(log.queries[0]) == sorted(set(wanted))


async def test_requests_during_a_query_go_in_the_next_one() -> None:
    log = Log({"a": 1, "b": 2, "c": 3})
    reader = HeadReader(log.read)
    first = asyncio.create_task(reader.head("a"))
    await asyncio.sleep(0.001)  # the first query is in flight
    later = await asyncio.gather(reader.head("b"), reader.head("c"))
    assert (await first, later) == (1, [2, 3])
    assert log.queries == [["a"], ["b", "c"]]


async def test_a_failed_query_fails_its_callers_and_the_next_one_is_tried() -> None:
    log = Log({"a": 1}, fail=True)
    reader = HeadReader(log.read)
    results = await asyncio.gather(reader.head("a"), reader.head("a"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    log.fail = False
    assert await reader.head("a") == 1


async def test_one_cancelled_caller_does_not_cancel_the_others() -> None:
    log = Log({"a": 7})
    reader = HeadReader(log.read)
    impatient = asyncio.create_task(reader.head("a"))
    patient = asyncio.create_task(reader.head("a"))
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert await patient == 7
