"""The message bus: the plan's MessageQueue (publish, subscribe, unsubscribe) on topics.

The bus only carries the news that something was committed; the database stays the source
of truth, so a message lost on the bus is recovered by replay (see realtime/).
"""

from ultrachat.bus.base import Bus, Handler

__all__ = ["Bus", "Handler"]
