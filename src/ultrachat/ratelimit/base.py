"""GCRA (the generic cell rate algorithm) shared by both limiter implementations.

A limit of ``max`` requests per ``window`` emits one token every ``window / max`` seconds and
lets a burst of up to ``max`` through. The only state per key is its theoretical arrival time
(TAT), so one atomic read-modify-write decides each request: this is what makes the Redis
version exact under concurrency and across processes.

Times are whole microseconds. With floating-point seconds the TAT drifts by a rounding error
on every request (a burst of 9 per second admitted 8), and Redis's Lua ``tostring`` keeps only
14 significant digits of a stored TAT; integers below 2**53 are exact in both languages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

MICROSECONDS = 1_000_000


@dataclass(frozen=True, slots=True)
class Limit:
    max: int
    window_seconds: float

    @property
    def interval(self) -> float:
        return self.window_seconds / self.max

    @property
    def interval_us(self) -> int:
        """The emission interval in whole microseconds (at least one)."""
        return max(1, round(self.window_seconds * MICROSECONDS / self.max))

    @property
    def burst_us(self) -> int:
        """How far ahead of now the TAT may run: exactly ``max`` intervals."""
        return self.interval_us * self.max


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds until one more request would be admitted; 0 when allowed
    reset_after: float  # seconds until the bucket is full again

    def headers(self) -> dict[str, str]:
        """The RateLimit-* header fields (IETF draft) plus Retry-After when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_after)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


def gcra(tat: int | None, now: int, limit: Limit) -> tuple[Decision, int | None]:
    """Decide one request at ``now`` (microseconds on the limiter's clock).

    Returns the decision and the new TAT to store (None: unchanged).
    """
    interval = limit.interval_us
    burst = limit.burst_us
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval
    allow_at = new_tat - burst
    if now < allow_at:
        retry_after = (allow_at - now) / MICROSECONDS
        return Decision(False, limit.max, 0, retry_after, (tat - now) / MICROSECONDS), None
    remaining = (burst - (new_tat - now)) // interval
    return Decision(True, limit.max, remaining, 0.0, (new_tat - now) / MICROSECONDS), new_tat


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit) -> Decision:
        """Count one request against ``key``; atomic with respect to every other caller."""
        ...

    async def peek(self, key: str, limit: Limit) -> Decision:
        """Whether a request would be admitted now, without counting it."""
        ...

    async def reset(self, key: str) -> None: ...
