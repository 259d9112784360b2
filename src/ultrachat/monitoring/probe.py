"""Bus lag, measured beside the traffic rather than on it.

Each node subscribes to ``monitoring.probe:<node>`` and publishes a probe there every
``interval`` seconds carrying its send time; the time until its own subscription receives it
is one publish-to-deliver lag: the same path a message's frames take (through Redis and back
when configured), without adding anything to the messages themselves. Send and receive
happen in one process, so the monotonic clock times them and no clock skew enters.

A probe that never comes back is counted as lost (the bus is down or dropping messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from ultrachat.bus import Bus
from ultrachat.tasks import cancel_and_wait

log = logging.getLogger(__name__)
PROBE_SECONDS = 5.0
_PAYLOAD = struct.Struct("!d")


@dataclass(frozen=True, slots=True)
class BusLag:
    """The probes that came back since the last ``drain``."""

    last_seconds: float | None
    mean_seconds: float | None
    received: int
    lost: int
    max_seconds: float | None = None


class BusProbe:
    def __init__(
        self,
        bus: Bus,
        node: str,
        *,
        interval: float = PROBE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        purpose: str = "monitoring",
        lost_after: float | None = None,
    ) -> None:
        self._bus = bus
        self.topic = f"{purpose}.probe:{node}"
        self.interval = interval
        # A probe still out after this long is not coming back (counted lost, then ignored).
        self._lost_after = 2 * interval if lost_after is None else lost_after
        self._clock = clock
        self._lags: list[float] = []
        self._outstanding: dict[float, None] = {}  # send times not yet received, in order
        self._lost = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, probing: bool = True) -> None:
        """Subscribe, and (``probing``) send a probe every interval; without, the owner
        calls ``send`` on its own schedule."""
        try:
            await self._bus.subscribe(self.topic, self._received)
        except Exception:
            # Monitoring never keeps a node from starting: the bus resubscribes when it
            # recovers, and until then the probes count as lost.
            log.warning("bus probe subscription failed; retried when the bus recovers")
        if probing:
            self._task = asyncio.create_task(self._probe_forever(), name="bus-probe")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(Exception):
            await self._bus.unsubscribe(self.topic)

    async def send(self) -> None:
        sent = self._clock()
        for old in [t for t in self._outstanding if sent - t > self._lost_after]:
            del self._outstanding[old]
            self._lost += 1
        self._outstanding[sent] = None
        await self._bus.publish(self.topic, _PAYLOAD.pack(sent))

    def _received(self, topic: str, payload: bytes) -> None:
        # Runs on the bus reader: record and return, never block.
        try:
            (sent,) = _PAYLOAD.unpack(payload)
        except struct.error:
            return
        if sent in self._outstanding:  # else a duplicate, or already counted as lost
            del self._outstanding[sent]
            self._lags.append(self._clock() - sent)

    def drain(self) -> BusLag:
        """The lags measured since the previous call (and forget them)."""
        lags, self._lags = self._lags, []
        lost, self._lost = self._lost, 0
        return BusLag(
            last_seconds=lags[-1] if lags else None,
            mean_seconds=sum(lags) / len(lags) if lags else None,
            received=len(lags),
            lost=lost,
            max_seconds=max(lags) if lags else None,
        )

    def forget_outstanding(self) -> None:
        """Give up the probes still out without counting them lost: after a bus outage
        they never come back (pub/sub is at most once), and that says nothing of the lag."""
        self._outstanding.clear()

    def oldest_outstanding(self) -> float | None:
        """How long the oldest probe still out has been travelling: a lower bound on the
        lag that a probe coming back late would only report later."""
        for sent in self._outstanding:  # in send order: the first is the oldest
            return self._clock() - sent
        return None

    async def _probe_forever(self) -> None:
        while True:
            try:
                await self.send()
            except Exception:
                log.debug("bus probe publish failed", exc_info=True)
            await asyncio.sleep(self.interval)
