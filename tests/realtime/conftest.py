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
