"""The MetricsCollector's figures as gauges (monitoring/collector.py sets them each interval).

Rates and ratios here are per collection interval (``ULTRACHAT_METRICS_INTERVAL_SECONDS``),
computed by the collector from the counters' deltas; Prometheus can still compute its own
from the counters (``rate(ultrachat_http_request_duration_seconds_count[5m])``). Figures the
interval has no data for (a latency without requests, a ratio without lookups) are NaN.

The process figures carry the ``ultrachat_`` prefix so that they never clash with the
client library's own ``process_*`` series.
"""

from __future__ import annotations

from prometheus_client import Gauge

UP = Gauge("ultrachat_up", "1 while this node's collector runs.")
ACTIVE_USERS = Gauge(
    "ultrachat_active_users",
    "Distinct users with a live connection or an authenticated request in the last 5 minutes, "
    "across all nodes.",
)
REQUESTS_PER_SECOND = Gauge(
    "ultrachat_requests_per_second", "API requests per second on this node, over the interval."
)
ERROR_RATIO = Gauge(
    "ultrachat_error_ratio",
    "API responses with a 5xx status / all API responses on this node, over the interval "
    "(0 without requests).",
)
API_LATENCY = Gauge(
    "ultrachat_api_latency_seconds",
    "API response time quantiles on this node over the interval, estimated from the "
    "request-duration histogram's buckets.",
    ["quantile"],
)
MESSAGES_IN = Gauge(
    "ultrachat_messages_in_per_second", "Messages committed per second on this node."
)
DELIVERIES_OUT = Gauge(
    "ultrachat_deliveries_out_per_second",
    "Live events written to WebSocket connections per second on this node.",
)
CACHE_HIT_RATIO = Gauge(
    "ultrachat_cache_hit_ratio",
    "Read-cache lookups answered without a database load / all lookups, by resource.",
    ["resource"],
)
BUS_LAG = Gauge(
    "ultrachat_bus_lag_seconds",
    "Mean publish-to-deliver time of this node's bus probes over the interval (NaN when "
    "none came back).",
)
PROCESS_CPU = Gauge(
    "ultrachat_process_cpu_percent",
    "CPU used by this process over the interval, in percent of one core (can exceed 100).",
)
PROCESS_MEMORY = Gauge(
    "ultrachat_process_resident_memory_bytes", "Resident memory of this process."
)
HOST_CPU = Gauge(
    "ultrachat_host_cpu_percent", "CPU busy on the host over the interval, percent of all cores."
)
HOST_MEMORY_USED = Gauge(
    "ultrachat_host_memory_used_bytes", "Host memory in use (total minus available)."
)
HOST_MEMORY_TOTAL = Gauge("ultrachat_host_memory_total_bytes", "Host memory.")
DISK_USED = Gauge("ultrachat_disk_used_bytes", "Used space of the file system holding data_dir.")
DISK_TOTAL = Gauge("ultrachat_disk_total_bytes", "Size of the file system holding data_dir.")
ACTIVE_SUBSCRIPTIONS = Gauge(
    "ultrachat_active_subscriptions", "Subscriptions active now (the same on every node)."
)
MRR = Gauge(
    "ultrachat_mrr",
    "Monthly recurring revenue of the active subscriptions, in currency units, by currency "
    "(the same on every node).",
    ["currency"],
)
CHURN_RATIO = Gauge(
    "ultrachat_churn_ratio",
    "Subscriptions cancelled in the last 30 days / those active 30 days ago (NaN when none were).",
)
