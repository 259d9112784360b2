"""Bus lag: a probe on the node's own topic, timed from publish to delivery."""

from __future__ import annotations

from ultrachat.bus.memory import MemoryBus
from ultrachat.monitoring.probe import BusProbe


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowBus(MemoryBus):
    """Delivers after ``delay`` seconds of the test's clock, or never."""

    def __init__(self, clock: Clock, delay: float | None) -> None:
        super().__init__()
        self.clock = clock
        self.delay = delay

    async def publish(self, topic: str, payload: bytes) -> None:
        if self.delay is None:
            return
        self.clock.now += self.delay
        await super().publish(topic, payload)


async def test_lag_is_the_time_to_delivery() -> None:
    clock = Clock()
    bus = SlowBus(clock, 0.25)
    probe = BusProbe(bus, "node-a:1", clock=clock)
    await bus.subscribe(probe.topic, probe._received)
    await probe.send()
    bus.delay = 0.75
    await probe.send()
    lag = probe.drain()
    assert (lag.last_seconds, lag.mean_seconds, lag.received, lag.lost) == (0.75, 0.5, 2, 0)
    assert probe.drain().received == 0  # each drain reports what came since the last


async def test_a_probe_that_never_arrives_is_lost() -> None:
    clock = Clock()
    bus = SlowBus(clock, None)
    probe = BusProbe(bus, "node-a:1", interval=5, clock=clock)
    await bus.subscribe(probe.topic, probe._received)
    await probe.send()
    clock.now += 11
    await probe.send()
    lag = probe.drain()
    assert (lag.last_seconds, lag.received, lag.lost) == (None, 0, 1)
