"""Prometheus metrics: names follow the conventions (ultrachat_ prefix, unit suffixes)."""
