"""Read-replica health and where reads go (storage/replicas.py, docs/database.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REPLICA_UP = Gauge(
    "ultrachat_db_replica_up",
    "1 while the replica answers its health check as a standby, else 0.",
    ["replica"],
)
REPLICA_IN_ROTATION = Gauge(
    "ultrachat_db_replica_in_rotation",
    "1 while the replica serves reads (up, fresh and within the lag bound), else 0.",
    ["replica"],
)
REPLICA_LAG_SECONDS = Gauge(
    "ultrachat_db_replica_lag_seconds",
    "How far behind the primary the replica's replayed data is (NaN when unknown).",
    ["replica"],
)
REPLICA_LAG_BYTES = Gauge(
    "ultrachat_db_replica_lag_bytes",
    "WAL bytes the primary has written that the replica has not replayed (NaN when unknown).",
    ["replica"],
)
DB_READS = Counter(
    "ultrachat_db_reads_total",
    "Read-only sessions by where they went: target replica or primary, and why.",
    ["target", "reason"],
)
RYW_RECORD_FAILURES = Counter(
    "ultrachat_db_ryw_record_failures_total",
    "Writes whose position could not be recorded for read-your-writes (reads fall back).",
)
