"""GCRA (the generic cell rate algorithm) shared by both limiter implementations.

A limit of ``max`` requests per ``window`` emits one token every ``window / max`` seconds and
lets a burst of up to ``max`` through. The only state per key is its theoretical arrival time
(TAT), so one atomic read-modify-write decides each request: this is what makes the Redis
version exact under concurrency and across processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Limit:
    max: int
    window_seconds: float

    @property
    def interval(self) -> float:
        return self.window_seconds / self.max


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


def gcra(tat: float | None, now: float, limit: Limit) -> tuple[Decision, float | None]:
    """Decide one request; returns the decision and the new TAT to store (None: unchanged)."""
    interval = limit.interval
    burst = limit.window_seconds
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval
    allow_at = new_tat - burst
    if now < allow_at:
        remaining = 0
        return Decision(False, limit.max, remaining, allow_at - now, tat - now), None
    remaining = int((burst - (new_tat - now)) / interval + 1e-9)
    return Decision(True, limit.max, remaining, 0.0, new_tat - now), new_tat


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit) -> Decision:
        """Count one request against ``key``; atomic with respect to every other caller."""
        ...

    async def peek(self, key: str, limit: Limit) -> Decision:
        """Whether a request would be admitted now, without counting it."""
        ...

    async def reset(self, key: str) -> None: ...
