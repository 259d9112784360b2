"""Live server nodes for the real-time tests: one on SQLite, two (over Redis) on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.backends import Backend
from tests.support.server import Node, cluster


@pytest.fixture(scope="session")
async def nodes(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[Node]]:
    count = 1 if backend.name == "sqlite" else 2
    async with cluster(backend, tmp_path_factory.mktemp(f"nodes-{backend.name}"), count) as ns:
        yield ns


@pytest.fixture(scope="session")
async def tight_node(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Node]:
    """One node with a 10-frame send queue, for backpressure and paced replay.

    Its ping interval is long so that a client that pauses reading on purpose is not
    dropped as a dead peer (test_heartbeat covers that) before the test resumes reading."""
    async with cluster(
        backend,
        tmp_path_factory.mktemp(f"tight-{backend.name}"),
        1,
        ws_send_queue_max=10,
        ws_ping_interval_seconds=30,
    ) as (node,):
        yield node
