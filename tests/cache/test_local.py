"""L1's invalidation strategies, on a clock the test controls."""

from __future__ import annotations

from ultrachat.cache.config import CacheConfig, ResourceConfig
from ultrachat.cache.local import MISSING, LocalTier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tier(max_size: int = 1_000_000, **resources: ResourceConfig) -> tuple[LocalTier, Clock]:
    clock = Clock()
    config = CacheConfig(global_ttl=3600, max_size=max_size, resources=resources)
    return LocalTier(config, clock), clock


def fill(local: LocalTier, resource: str, count: int) -> None:
    for i in range(count):
        local.set(resource, f"k{i}", i)


def present(local: LocalTier, resource: str, count: int) -> list[str]:
    return [f"k{i}" for i in range(count) if local.get(resource, f"k{i}") is not MISSING]


def test_time_expires_after_the_ttl_and_not_before() -> None:
    local, clock = tier(r=ResourceConfig(300, 2, "time"))
    local.set("r", "a", "value")
    clock.advance(299.9)
    assert local.get("r", "a") == "value"
    clock.advance(0.1)
    assert local.get("r", "a") is MISSING
    assert len(local) == 0


def test_time_expiry_counts_from_the_write_not_the_read() -> None:
    local, clock = tier(r=ResourceConfig(10, 5, "time"))
    local.set("r", "a", 1)
    for _ in range(9):
        clock.advance(1)
        assert local.get("r", "a") == 1
    clock.advance(1)
    assert local.get("r", "a") is MISSING
    local.set("r", "a", 2)  # a new write starts a new TTL
    clock.advance(9)
    assert local.get("r", "a") == 2


def test_time_ignores_the_resource_max_size() -> None:
    local, _ = tier(r=ResourceConfig(300, 2, "time"))
    fill(local, "r", 50)
    assert len(present(local, "r", 50)) == 50


def test_time_is_still_bounded_by_the_global_max_size() -> None:
    local, _ = tier(max_size=10, r=ResourceConfig(300, 2, "time"))
    fill(local, "r", 50)
    assert present(local, "r", 50) == [f"k{i}" for i in range(40, 50)]


def test_size_never_expires() -> None:
    local, clock = tier(r=ResourceConfig(1, 10, "size"))
    local.set("r", "a", "value")
    clock.advance(10 * 365 * 86_400)
    assert local.get("r", "a") == "value"


def test_size_evicts_the_least_recently_used_at_max_size() -> None:
    local, _ = tier(r=ResourceConfig(60, 3, "size"))
    fill(local, "r", 3)
    assert local.get("r", "k0") == 0  # k0 is now the most recently used; k1 the least
    local.set("r", "k3", 3)
    assert present(local, "r", 4) == ["k0", "k2", "k3"]
    assert local.size_of("r") == 3
    assert local.evictions == 1


def test_both_expires_after_the_ttl() -> None:
    local, clock = tier(r=ResourceConfig(60, 3, "both"))
    local.set("r", "a", 1)
    clock.advance(60)
    assert local.get("r", "a") is MISSING


def test_both_evicts_at_max_size_before_the_ttl() -> None:
    local, clock = tier(r=ResourceConfig(60, 3, "both"))
    fill(local, "r", 4)
    assert present(local, "r", 4) == ["k1", "k2", "k3"]
    clock.advance(30)
    assert present(local, "r", 4) == ["k1", "k2", "k3"]
    clock.advance(30)
    assert present(local, "r", 4) == []


def test_expired_entries_are_dropped_on_write_before_live_ones_are_evicted() -> None:
    local, clock = tier(r=ResourceConfig(10, 3, "both"))
    fill(local, "r", 3)
    clock.advance(10)
    local.set("r", "new", "x")
    assert local.size_of("r") == 1
    assert local.expirations == 3 and local.evictions == 0


def test_the_global_max_evicts_the_least_recently_used_of_any_resource() -> None:
    local, _ = tier(
        max_size=4,
        a=ResourceConfig(60, 100, "both"),
        b=ResourceConfig(60, 100, "size"),
    )
    local.set("a", "a1", 1)
    local.set("b", "b1", 1)
    local.set("a", "a2", 2)
    local.set("b", "b2", 2)
    assert local.get("a", "a1") == 1  # touched: b1 is now the coldest
    local.set("b", "b3", 3)
    assert local.get("b", "b1") is MISSING
    assert [local.get("a", "a1"), local.get("a", "a2")] == [1, 2]
    assert len(local) == 4


def test_a_resource_with_max_size_zero_caches_nothing() -> None:
    local, _ = tier(r=ResourceConfig(60, 0, "both"))
    local.set("r", "a", 1)
    assert local.get("r", "a") is MISSING


def test_none_is_a_value_and_delete_and_clear_forget() -> None:
    local, _ = tier(r=ResourceConfig(60, 10, "both"))
    local.set("r", "a", None)
    local.set("r", "b", 2)
    assert local.get("r", "a") is None
    assert local.delete("r", "a") and not local.delete("r", "a")
    local.clear()
    assert local.get("r", "b") is MISSING and len(local) == 0
