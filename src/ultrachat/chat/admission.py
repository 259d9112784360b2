"""Admission control for sends: an overloaded node refuses some new messages at once, so the
ones it accepts are still delivered within about a second instead of a minute later.

Accepting a send is cheap; delivering it costs every node one socket write per recipient.
A node that keeps accepting sends faster than it can deliver them only lengthens a queue it
does not otherwise watch (sends waiting for their commit, frames in Redis's buffer for this
node's subscriber, work in the event loop): at five times the rate this machine could
deliver, acks and deliveries ran 90 s late and kept growing (docs/benchmarks.md). Shedding
at the door costs a refusal (no write, no fan-out), which is what lets the rest stay on time.

The signal is the node's lag: how late a message sent now would reach its readers. It has
two parts, added up:

- the commit backlog (``backlog``, the group committer's ``oldest_wait``): how long the
  oldest send not yet acked has waited. A message is published only once committed, so
  this is delay every recipient sees; under overload it was most of it (acks 15 s late
  while the bus was under a second);
- the bus lag: every ``interval`` a probe goes through the bus to the node's own topic, the
  path every message's frames take, queued behind them. That part is the slowest probe that
  came back since the last tick, the age of the oldest still out, or how late the tick
  itself woke (a blocked event loop), whichever is largest.

The control acts on the fraction of sends refused. While the lag has stayed over ``target``
for ``sustain`` seconds and is still growing, the fraction rises each tick by ``STEP_UP``
times how many targets the lag is (at most ``MAX_STEP_UP``): far behind, it reaches the
share the node cannot deliver in a second or two instead of many. While the lag is over the
target but falling, the queue is draining at the present fraction, so it is held: raising
it further would only overshoot. Under the target it falls by ``STEP_DOWN`` a tick, and by
``FAST_STEP_DOWN`` once the lag is under half the target: the backlog is gone, and the
clients told to come back then should find the door open. It settles near the fraction the
node cannot deliver (at five times its capacity, 80%) without flapping between all and
nothing, and a lone stall (a collection, a slow query) refuses nothing.

Refused sends get ``overloaded`` (503 with Retry-After over REST, an error frame with
``retry_after_ms`` over WebSocket); nothing was written, so the client retries with the same
``client_msg_id``. The delay asked for is the lag itself, in whole seconds (1 to
``MAX_RETRY_AFTER``): by then the node has worked through what it had queued, so the retry
finds room instead of being refused again. A burst that the node would clear in seconds
must not turn into retries minutes later: in a load test whose clients doubled their wait
after each refusal of a fixed 1 s, the burst's slowest message arrived after 130 s, against
8 s with no shedding at all (docs/benchmarks.md).

Each node judges only its own lag: behind a load balancer that spreads clients evenly,
every node carries the same share of the fan-out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable

from ultrachat.bus import Bus
from ultrachat.errors import Overloaded
from ultrachat.metrics.chat import DELIVERY_LAG, SEND_REFUSAL_RATIO, SENDS_SHED
from ultrachat.monitoring.probe import BusProbe
from ultrachat.tasks import cancel_and_wait

log = logging.getLogger(__name__)
TICK_SECONDS = 0.25
STEP_UP = 0.05  # a tick, with the lag at the target; in proportion above it
MAX_STEP_UP = 0.20  # a tick: from nothing to everything in five ticks at the most
STEP_DOWN = 0.02
FAST_STEP_DOWN = 0.08  # a tick, with the lag under half the target
MAX_RETRY_AFTER = 10  # seconds
# A probe out this long is given up (counted lost); its age still counts as lag until then.
PROBE_GIVE_UP_SECONDS = 60.0


def retry_after_for(lag: float) -> int:
    """The delay a refused client is asked to wait: the lag in whole seconds, 1 to
    ``MAX_RETRY_AFTER``. By then the node has worked through what was queued."""
    return min(MAX_RETRY_AFTER, max(1, math.ceil(lag)))


class SendAdmission:
    def __init__(
        self,
        bus: Bus,
        node: str,
        *,
        target: float,
        sustain: float = 1.0,
        interval: float = TICK_SECONDS,
        backlog: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.target = target
        self._backlog = backlog
        self._ticks_to_shed = max(1, round(sustain / interval))
        self._interval = interval
        self._clock = clock
        self._chance = chance
        self._bus = bus
        self._probe = BusProbe(
            bus,
            node,
            interval=interval,
            clock=clock,
            purpose="admission",
            lost_after=PROBE_GIVE_UP_SECONDS,
        )
        self._over = 0  # consecutive ticks with the lag over the target
        self.lag = 0.0
        self.refusal_ratio = 0.0
        self._task: asyncio.Task[None] | None = None
        bus.on_reconnect(self._bus_recovered)

    @property
    def enabled(self) -> bool:
        return self.target > 0

    async def start(self) -> None:
        if not self.enabled:
            return
        await self._probe.start(probing=False)  # each tick sends the next probe
        self._task = asyncio.create_task(self._control_forever(), name="send-admission")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.enabled:
            await self._probe.stop()

    def admit(self) -> None:
        """Raise ``Overloaded`` for the share of sends this node is shedding right now."""
        if self.refusal_ratio and self._chance() < self.refusal_ratio:
            SENDS_SHED.labels("lag").inc()
            raise Overloaded(
                "this server is behind on deliveries and refused the message;"
                " retry with the same client_msg_id",
                retry_after=retry_after_for(self.lag),
            )

    def observe(self, lag: float) -> None:
        """One tick of the control: ``lag`` is the worst lag seen since the last."""
        if not self.enabled:
            return
        previous, self.lag = self.lag, lag
        self._over = self._over + 1 if lag > self.target else 0
        was = self.refusal_ratio
        if self._over >= self._ticks_to_shed:
            if lag >= previous:  # still growing: what is refused is not enough yet
                step = min(MAX_STEP_UP, STEP_UP * lag / self.target)
                self.refusal_ratio = min(1.0, was + step)
        elif lag <= self.target:
            step = FAST_STEP_DOWN if lag < self.target / 2 else STEP_DOWN
            self.refusal_ratio = max(0.0, was - step)
        if (was == 0) != (self.refusal_ratio == 0):
            log.warning(
                "send admission: delivery lag %.2f s (target %.2f s); %s",
                lag,
                self.target,
                "refusing a share of new sends" if was == 0 else "accepting every send again",
            )
        DELIVERY_LAG.observe(lag)
        SEND_REFUSAL_RATIO.set(self.refusal_ratio)

    async def _bus_recovered(self) -> None:
        self._probe.forget_outstanding()

    async def tick(self, late: float = 0.0) -> None:
        """Measure (``late``: how much later than planned this tick runs), adjust, and send
        the probe the next tick reads."""
        came_back = self._probe.drain().max_seconds or 0.0
        # While the bus is down nothing is delivered late, only after it recovers (by
        # replay), so an outage is not overload: its probes are not counted.
        still_out = self._probe.oldest_outstanding() if self._bus.healthy else None
        self.observe(self._backlog() + max(came_back, still_out or 0.0, late))
        if not self._bus.healthy:
            self._probe.forget_outstanding()
            return
        try:
            await self._probe.send()
        except Exception:
            log.debug("admission probe publish failed", exc_info=True)
            self._probe.forget_outstanding()

    async def _control_forever(self) -> None:
        while True:
            due = self._clock() + self._interval
            await asyncio.sleep(self._interval)
            await self.tick(late=max(0.0, self._clock() - due))  # late: a blocked event loop
