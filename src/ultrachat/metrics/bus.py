"""Bus health and traffic."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BUS_PUBLISHED = Counter("ultrachat_bus_published_messages_total", "Messages published.")
BUS_RECEIVED = Counter("ultrachat_bus_received_messages_total", "Messages received.")
BUS_UP = Gauge("ultrachat_bus_up", "1 while the bus connection is up, 0 during an outage.")
BUS_RECONNECTS = Counter("ultrachat_bus_reconnects_total", "Recoveries from a bus outage.")
BUS_SUBSCRIPTIONS = Gauge("ultrachat_bus_subscribed_topics", "Topics this node subscribes to.")
