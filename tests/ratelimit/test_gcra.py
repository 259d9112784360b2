"""GCRA and both limiters: bursts, refusals, headers, and exactness under concurrency."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.support.backends import REDIS_URL, redis_prefix
from ultrachat.ratelimit import Decision, Limit, RateLimiter
from ultrachat.ratelimit import memory as memory_module
from ultrachat.ratelimit.base import gcra
from ultrachat.ratelimit.memory import MemoryRateLimiter
from ultrachat.ratelimit.redis import RedisRateLimiter

SECOND = 1_000_000  # the algorithm's clock is in microseconds
REDIS_EPOCH = 1_700_000_000 * SECOND  # a "now" as large as Redis's TIME gives


def burst(limit: Limit, now: int, tat: int | None = None) -> tuple[list[Decision], int | None]:
    """Hit until refused, all at the same instant; returns the decisions and the final TAT."""
    decisions = []
    for _ in range(limit.max + 5):
        decision, new_tat = gcra(tat, now, limit)
        decisions.append(decision)
        if not decision.allowed:
            assert new_tat is None, "a refusal must not move the TAT"
            break
        tat = new_tat
    return decisions, tat


# The pure algorithm


def test_a_burst_of_max_is_admitted_then_refused_with_the_right_retry_after() -> None:
    limit = Limit(5, 3600)  # one token every 720 s
    decisions, _ = burst(limit, REDIS_EPOCH)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert [d.reset_after for d in decisions[:5]] == [720.0, 1440.0, 2160.0, 2880.0, 3600.0]
    refused = decisions[-1]
    assert refused.retry_after == 720.0
    assert refused.reset_after == 3600.0
    assert refused.limit == 5


@pytest.mark.parametrize(
    ("maximum", "window"),
    [(9, 1), (7, 3), (11, 0.7), (100, 900), (18_000, 900), (3, 7), (1, 1)],
)
@pytest.mark.parametrize("now", [0, 123_456_789, REDIS_EPOCH])
def test_exactly_max_in_a_burst_whatever_the_numbers(maximum: int, window: float, now: int) -> None:
    decisions, _ = burst(Limit(maximum, window), now)
    assert sum(d.allowed for d in decisions) == maximum
    assert [d.remaining for d in decisions if d.allowed] == list(range(maximum - 1, -1, -1))


def test_one_interval_later_exactly_one_more_is_admitted() -> None:
    limit = Limit(4, 60)  # 15 s
    _, tat = burst(limit, REDIS_EPOCH)
    early, _ = gcra(tat, REDIS_EPOCH + 15 * SECOND - 1, limit)
    assert not early.allowed
    assert early.retry_after == pytest.approx(1e-6)
    decisions, _ = burst(limit, REDIS_EPOCH + 15 * SECOND, tat)
    assert [d.allowed for d in decisions] == [True, False]


def test_after_a_full_window_the_whole_burst_is_back() -> None:
    limit = Limit(4, 60)
    _, tat = burst(limit, REDIS_EPOCH)
    decisions, _ = burst(limit, REDIS_EPOCH + 60 * SECOND, tat)
    assert [d.allowed for d in decisions] == [True] * 4 + [False]
    # Long after, a stale TAT counts as "now": the bucket is full, no more.
    decisions, _ = burst(limit, REDIS_EPOCH + 10**6 * SECOND, tat)
    assert sum(d.allowed for d in decisions) == 4


def test_headers_when_allowed_and_when_refused() -> None:
    allowed = Decision(True, 100, 99, 0.0, 9.0)
    assert allowed.headers() == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "99",
        "RateLimit-Reset": "9",
    }
    refused = Decision(False, 100, 0, 8.2, 900.0)
    assert refused.headers() == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "900",
        "Retry-After": "9",
    }
    # Never "Retry-After: 0": a client told to wait no time would retry at once.
    assert Decision(False, 1, 0, 0.000001, 0.5).headers()["Retry-After"] == "1"


# Both limiters


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    async with redis_prefix() as prefix:
        client = Redis.from_url(REDIS_URL)
        try:
            yield client, prefix
        finally:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryRateLimiter()
        return
    async with redis_prefix() as prefix:
        client = Redis.from_url(REDIS_URL)
        try:
            yield RedisRateLimiter(client, prefix)
        finally:
            await client.aclose()


async def test_limiter_admits_a_burst_then_refuses(limiter: RateLimiter) -> None:
    limit = Limit(5, 3600)
    decisions = [await limiter.hit("burst", limit) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    refused = decisions[-1]
    # The next token is one interval (720 s) after the first hit, less the time since.
    assert 719 < refused.retry_after <= 720
    assert 3599 < refused.reset_after <= 3600
    headers = refused.headers()
    assert headers["Retry-After"] == "720"
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Limit"] == "5"


async def test_limiter_keys_are_independent_and_reset_clears_one(limiter: RateLimiter) -> None:
    limit = Limit(2, 3600)
    for _ in range(2):
        assert (await limiter.hit("a", limit)).allowed
    assert not (await limiter.hit("a", limit)).allowed
    assert (await limiter.hit("b", limit)).allowed
    await limiter.reset("a")
    assert (await limiter.hit("a", limit)).allowed


async def test_peek_does_not_count(limiter: RateLimiter) -> None:
    limit = Limit(3, 3600)
    for _ in range(10):
        assert (await limiter.peek("peek", limit)).allowed
    assert [(await limiter.hit("peek", limit)).allowed for _ in range(4)] == [True] * 3 + [False]
    assert not (await limiter.peek("peek", limit)).allowed


async def test_limiter_is_exact_under_50_concurrent_hits(limiter: RateLimiter) -> None:
    limit = Limit(10, 3600)
    decisions = await asyncio.gather(*(limiter.hit("crowd", limit) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


async def test_memory_limiter_with_a_controlled_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [REDIS_EPOCH]
    monkeypatch.setattr(memory_module, "_now_us", lambda: clock[0])
    limiter, limit = MemoryRateLimiter(), Limit(3, 30)
    assert [(await limiter.hit("k", limit)).allowed for _ in range(4)] == [True] * 3 + [False]
    clock[0] += 10 * SECOND - 1
    assert (await limiter.hit("k", limit)).retry_after == pytest.approx(1e-6)
    clock[0] += 1
    assert (await limiter.hit("k", limit)).allowed
    assert not (await limiter.hit("k", limit)).allowed


# Across processes

_HAMMER = """
import asyncio, sys
from redis.asyncio import Redis
from ultrachat.ratelimit import Limit
from ultrachat.ratelimit.redis import RedisRateLimiter

async def main(url, prefix, key, hits, maximum):
    client = Redis.from_url(url)
    limiter, limit = RedisRateLimiter(client, prefix), Limit(int(maximum), 3600)
    await limiter.peek(key, limit)  # connect and load the script before the start signal
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    decisions = await asyncio.gather(*(limiter.hit(key, limit) for _ in range(int(hits))))
    print(sum(d.allowed for d in decisions), flush=True)
    await client.aclose()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_never_more_than_the_limit_from_two_processes(redis: tuple[Redis, str]) -> None:
    """50 concurrent requests, 25 from each of two OS processes, at a limit of 10."""
    client, prefix = redis
    key = f"two-processes-{secrets.token_hex(4)}"
    args = [REDIS_URL, prefix, key, "25", "10"]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _HAMMER,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line == b"ready\n", line
        for process in processes:  # both are connected and waiting: start them together
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        outputs = [await asyncio.wait_for(p.communicate(), 60) for p in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert [p.returncode for p in processes] == [0, 0]
    admitted = [int(stdout) for stdout, _ in outputs]
    assert sum(admitted) == 10, admitted
    assert not (await RedisRateLimiter(client, prefix).peek(key, Limit(10, 3600))).allowed
