"""Engines and sessions for the primary database.

SQLite (the embedded default) gets WAL mode and a busy timeout so that one writer and many
readers coexist. Both get a bounded pool that counts its waiters (storage/pools.py). Services
receive an ``AsyncSession`` from here and keep no state of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ultrachat.storage.pools import WaitCountingQueuePool

if TYPE_CHECKING:
    from ultrachat.storage.replicas import ReplicaSet


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str, pool_size: int = 10, pool_timeout: float = 5.0) -> AsyncEngine:
    """An async engine for ``url``; creates the SQLite file's folder when needed."""
    parsed = make_url(url)
    # Bounded on both backends: a caller waits at most pool_timeout for a connection, then
    # gets sqlalchemy.exc.TimeoutError (a 503 with Retry-After at the gateway).
    bounded: dict[str, Any] = {
        "poolclass": WaitCountingQueuePool,
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_timeout": pool_timeout,
    }
    if parsed.get_backend_name() == "sqlite":
        in_memory = not parsed.database or parsed.database == ":memory:"
        if not in_memory:
            Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": 5}, **({} if in_memory else bounded)
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        **bounded,
        pool_pre_ping=False,
        connect_args={"server_settings": server_settings("ultrachat")},
    )


def server_settings(application_name: str) -> dict[str, str]:
    """PostgreSQL session settings for every connection UltraChat opens.

    JIT off: PostgreSQL compiles a query to machine code once its estimated cost passes
    ``jit_above_cost``, which costs tens of milliseconds each time, and our queries are short
    OLTP reads and writes that finish in less. A channel list estimated past that bound took
    89 ms with JIT (26 ms of it compiling) and 29 ms without (docs/database.md). asyncpg
    turns JIT off for its own type introspection queries for the same reason
    (MagicStack/asyncpg#1082)."""
    return {"application_name": application_name, "jit": "off"}


class Database:
    """The primary database: an engine plus a session factory."""

    def __init__(self, url: str, pool_size: int = 10, pool_timeout: float = 5.0) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size, pool_timeout)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.replicas: ReplicaSet | None = None  # read replicas, when configured

    def attach_replicas(self, replicas: ReplicaSet) -> None:
        """Serve ``reader`` from ``replicas`` (storage/replicas.py); ``close`` closes them."""
        self.replicas = replicas

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session
        if self.replicas is not None:
            await self.replicas.committed()  # read-your-writes: where the commit ended

    @asynccontextmanager
    async def reader(self, user_id: str | None = None) -> AsyncIterator[AsyncSession]:
        """A session for read-only queries on behalf of ``user_id`` (default: the request's).

        Without replicas it is the primary's session. With them, a replica that has
        replayed this user's (and this request's) last write, else the primary. Never write
        through it; never use it to fill a shared cache (a replica may be behind others).
        """
        if self.replicas is None:
            async with self.sessions() as session:
                yield session
            return
        async with self.replicas.reader(user_id) as session:
            yield session

    async def wrote(self, user_id: str) -> None:
        """Tell read-your-writes that ``user_id``'s write was committed by another task."""
        if self.replicas is not None:
            await self.replicas.wrote(user_id)

    async def ping(self, within: float = 2.0) -> bool:
        """Whether the database answers within ``within`` seconds (a probe must not hang)."""
        try:
            async with asyncio.timeout(within), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        if self.replicas is not None:
            await self.replicas.close()
        await self.engine.dispose()
