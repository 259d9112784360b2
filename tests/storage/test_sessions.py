"""What every PostgreSQL connection of UltraChat runs with."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.support.backends import Backend


async def test_postgres_connections_name_themselves_and_never_jit(
    backend: Backend, app: FastAPI
) -> None:
    if backend.name != "postgres":
        pytest.skip("PostgreSQL session settings; SQLite has none")
    async with app.state.runtime.db.sessions() as session:
        jit = (await session.execute(text("SHOW jit"))).scalar_one()
        name = (await session.execute(text("SHOW application_name"))).scalar_one()
    # JIT compiles for tens of ms per query, longer than our queries run (storage/database.py).
    assert (jit, name) == ("off", "ultrachat")
