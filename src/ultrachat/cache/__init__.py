"""Cache: a small key-value interface with an in-process and a Redis implementation."""

from ultrachat.cache.base import Cache

__all__ = ["Cache"]
