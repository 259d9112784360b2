"""Chat and real-time delivery metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_COMMITTED = Counter(
    "ultrachat_channel_events_committed_total", "Channel events committed, by kind.", ["kind"]
)
EVENTS_UNANNOUNCED = Counter(
    "ultrachat_channel_events_unannounced_total",
    "Committed events whose bus publish failed (recovered by replay).",
)
WS_CONNECTIONS = Gauge("ultrachat_ws_connections", "Open WebSocket connections on this node.")
WS_DELIVERIES = Counter(
    "ultrachat_ws_deliveries_total",
    "Live channel events fanned out to WebSocket connections (replays are counted apart).",
)
WS_CLOSED = Counter("ultrachat_ws_closed_total", "WebSocket closes by close code.", ["code"])
WS_REPLAYED = Counter("ultrachat_ws_replayed_events_total", "Events replayed from storage.")
GAP_FILLS = Counter(
    "ultrachat_realtime_gap_fills_total", "Times a node filled a seq gap from storage."
)
GROUP_COMMIT_BATCH = Histogram(
    "ultrachat_group_commit_batch_size",
    "Sends written per group-commit transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
GROUP_COMMIT_FAILED = Counter(
    "ultrachat_group_commit_failed_batches_total", "Group-commit transactions that failed."
)
DELIVERY_LAG = Histogram(
    "ultrachat_delivery_lag_seconds",
    "How late a message sent now would reach its readers on this node, measured by send"
    " admission 4 times a second: the commit backlog plus the bus lag (a probe).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SEND_REFUSAL_RATIO = Gauge(
    "ultrachat_send_refusal_ratio",
    "Share of new sends this node refuses right now to keep its deliveries on time.",
)
SENDS_SHED = Counter(
    "ultrachat_sends_shed_total",
    "Sends refused with 'overloaded' before anything was written, by why: delivery lag, or"
    " the group committer's queue full.",
    ["reason"],
)
