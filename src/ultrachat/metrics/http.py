"""The plan's APIMetrics (route template, method, status, duration) as Prometheus series.

Labels use the route template (``/api/v1/users/{user_id}``), never the raw path, so that
cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_DURATION = Histogram(
    "ultrachat_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
    # 75 ms splits the bucket below the plan's 100 ms target, so that quantile estimates
    # (monitoring/figures.py) near it are off by at most 25 ms; 100 ms itself is a bound,
    # so whether a p99 meets the target is exact.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

RATE_LIMITED = Counter(
    "ultrachat_rate_limited_requests_total",
    "Requests refused with 429, by limit name.",
    ["limit"],
)

AUTH_EVENTS = Counter(
    "ultrachat_auth_events_total",
    "Authentication outcomes (login_ok, login_failed, refresh_ok, refresh_reuse, ...).",
    ["event"],
)
