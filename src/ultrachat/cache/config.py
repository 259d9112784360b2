"""The plan's CacheConfig: a global TTL and size, and per-resource TTL, size and strategy.

Strategies (docs/cache.md):

- ``time``: an entry expires ``ttl`` seconds after it was stored; the resource's own
  ``max_size`` is not enforced, only the global ``max_size`` (shared by every resource);
- ``size``: an entry never expires; past ``max_size`` entries, the least recently used goes;
- ``both``: whichever comes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

Strategy = Literal["time", "size", "both"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

GLOBAL_TTL_SECONDS = 3600.0  # 1 hour
GLOBAL_MAX_SIZE = 1_000_000  # 1M entries

# Resource names, as they appear in settings and in metric labels.
USER_PREFERENCES = "user-preferences"
CHAT_MESSAGES = "chat-messages"
CHANNEL_MEMBERSHIP = "channel-membership"
USER_CHANNELS = "user-channels"
USER_PROFILES = "user-profiles"
CHANNEL_HISTORY_HEAD = "channel-history-head"


@dataclass(frozen=True, slots=True)
class ResourceConfig:
    ttl: float
    max_size: int
    invalidation_strategy: Strategy

    @property
    def expires(self) -> bool:
        return self.invalidation_strategy in ("time", "both")

    @property
    def bounded(self) -> bool:
        return self.invalidation_strategy in ("size", "both")


# The plan's two resources, then the ones the hot paths need. A ttl of 0 here stands for
# the global TTL.
DEFAULT_RESOURCES: dict[str, ResourceConfig] = {
    USER_PREFERENCES: ResourceConfig(86_400, 100_000, "both"),
    CHAT_MESSAGES: ResourceConfig(300, 500_000, "time"),
    # These follow the global TTL (ULTRACHAT_CACHE_TTL_SECONDS) unless overridden.
    CHANNEL_MEMBERSHIP: ResourceConfig(0, 500_000, "both"),
    USER_CHANNELS: ResourceConfig(0, 100_000, "both"),
    # The global TTL is also the access tokens' lifetime (1 h): a profile warmed when a
    # token is issued (sign-in, refresh) stays cached while that token's holder may ask for
    # it. Every role change invalidates it on every node (the CLI's too, over Redis).
    USER_PROFILES: ResourceConfig(0, 100_000, "both"),
    CHANNEL_HISTORY_HEAD: ResourceConfig(300, 10_000, "both"),
}


@dataclass(frozen=True, slots=True)
class CacheConfig:
    global_ttl: float = GLOBAL_TTL_SECONDS
    max_size: int = GLOBAL_MAX_SIZE
    resources: Mapping[str, ResourceConfig] = field(default_factory=dict)

    def resource(self, name: str) -> ResourceConfig:
        try:
            return self.resources[name]
        except KeyError:
            raise KeyError(f"unknown cache resource {name!r}") from None

    @classmethod
    def default(cls) -> CacheConfig:
        return build_config()


def build_config(
    global_ttl: float = GLOBAL_TTL_SECONDS,
    max_size: int = GLOBAL_MAX_SIZE,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> CacheConfig:
    """The defaults with ``overrides`` applied: resource name → any of ``ttl``, ``max_size``,
    ``invalidation_strategy``. Raises ValueError naming the problem."""
    resources = {
        name: replace(r, ttl=r.ttl or float(global_ttl)) for name, r in DEFAULT_RESOURCES.items()
    }
    for name, changes in (overrides or {}).items():
        if name not in resources:
            known = ", ".join(sorted(resources))
            raise ValueError(f"unknown cache resource {name!r} (known: {known})")
        if not isinstance(changes, Mapping):
            raise ValueError(f"{name}: expected an object of ttl, max_size, invalidation_strategy")
        unknown = set(changes) - {"ttl", "max_size", "invalidation_strategy"}
        if unknown:
            raise ValueError(f"{name}: unknown field {sorted(unknown)[0]!r}")
        current = resources[name]
        ttl = changes.get("ttl", current.ttl)
        size = changes.get("max_size", current.max_size)
        strategy = changes.get("invalidation_strategy", current.invalidation_strategy)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ValueError(f"{name}: ttl must be a number of seconds greater than 0")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{name}: max_size must be an integer of at least 0")
        if strategy not in STRATEGIES:
            choices = ", ".join(STRATEGIES)
            raise ValueError(f"{name}: invalidation_strategy must be one of {choices}")
        resources[name] = replace(
            current, ttl=float(ttl), max_size=size, invalidation_strategy=strategy
        )
    return CacheConfig(global_ttl=global_ttl, max_size=max_size, resources=resources)
