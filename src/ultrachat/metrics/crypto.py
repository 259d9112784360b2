"""Encryption-at-rest metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DECRYPT_FAILURES = Counter(
    "ultrachat_decrypt_failures",
    "Stored ciphertexts that failed to open (edited, moved, or under a lost key).",
    ["column"],
)
DATA_KEY_RESERVED_USES = Gauge(
    "ultrachat_data_key_reserved_uses",
    "Encryptions reserved from each data key by all nodes, as last seen by this one.",
    ["key_id"],
)
REWRAP_ROWS = Counter(
    "ultrachat_rewrap_rows",
    "Rows the re-wrap job has scanned and re-encrypted to the primary key.",
    ["column", "outcome"],
)
REWRAP_PROGRESS = Gauge(
    "ultrachat_rewrap_progress_ratio",
    "The re-wrap job's progress through each sealed column (1 when done).",
    ["column"],
)
