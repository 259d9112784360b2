"""Stopping a background task: cancelled until it has really finished, even when a library
swallows the first cancels."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from redis.asyncio import BlockingConnectionPool, Redis

from tests.support.backends import REDIS_URL, unavailable
from ultrachat.tasks import cancel_and_wait


async def test_a_task_that_swallows_cancels_is_cancelled_until_it_stops() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed < 3:  # as redis-py does inside a command, now and then
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled() and swallowed == 3


async def test_loops_of_redis_commands_stop_when_cancelled_at_any_moment() -> None:
    # The case that hung a server's shutdown: a loop that publishes to Redis and carries
    # on after a failed publish, cancelled wherever it happens to be.
    client = Redis(
        connection_pool=BlockingConnectionPool.from_url(
            REDIS_URL, max_connections=4, timeout=5, socket_timeout=5, socket_connect_timeout=2
        )
    )
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_URL}: {exc}")
    topic = f"uctest:{secrets.token_hex(4)}:cancel"

    async def publish_forever() -> None:
        while True:
            await asyncio.sleep(0)
            with contextlib.suppress(Exception):  # a failed publish: carry on, as ours do
                await client.publish(topic, b"p")

    try:
        for n in range(40):
            task = asyncio.create_task(publish_forever())
            await asyncio.sleep((n % 10) / 1000)
            await asyncio.wait_for(cancel_and_wait(task), 10)
            assert task.done()
    finally:
        await client.aclose()
