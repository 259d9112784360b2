"""Fixtures for the audit tests: the shared app's audit rows, and a fresh database to tamper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.support.app import migrate, settings_for
from tests.support.backends import Backend, postgres_database
from ultrachat.audit.models import AuditRecord
from ultrachat.storage import Database


async def rows_for(app: FastAPI, target_id: str) -> list[AuditRecord]:
    """Every audit record about ``target_id``, in seq order."""
    db: Database = app.state.runtime.db
    async with db.sessions() as session:
        stmt = select(AuditRecord).where(AuditRecord.target_id == target_id)
        return list((await session.scalars(stmt.order_by(AuditRecord.seq))).all())


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a new, migrated database (an audit chain of its own)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        await migrate(settings_for(Backend("sqlite", url, "", "uc:")))
        yield url
        return
    async with postgres_database() as url:
        await migrate(settings_for(Backend("postgres", url, "", "uc:")))
        yield url
