"""Rate limiting by GCRA, in-process or as an atomic Redis script."""

from ultrachat.ratelimit.base import Decision, Limit, RateLimiter

__all__ = ["Decision", "Limit", "RateLimiter"]
