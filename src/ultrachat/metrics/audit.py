"""Audit log metrics."""

from __future__ import annotations

from prometheus_client import Counter

AUDIT_APPEND_FAILURES = Counter(
    "ultrachat_audit_append_failures",
    "Audit records that could not be appended (logged at ERROR; the change itself committed).",
)
