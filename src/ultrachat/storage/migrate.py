"""Apply Alembic migrations to the configured database (``ultrachat migrate``)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from ultrachat.storage.database import Database
from ultrachat.storage.partitions import PARTITIONED_TABLES, ensure_monthly_partitions

if TYPE_CHECKING:
    from ultrachat.crypto.master import KeyProvider

KeyProviderFactory = Callable[[], "KeyProvider"]


def _config(connection: Connection, key_provider: KeyProviderFactory | None = None) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("ultrachat.storage") / "migrations")
    )
    config.attributes["connection"] = connection
    # Called only if a migration must encrypt rows that already exist (0006).
    config.attributes["key_provider"] = key_provider
    return config


async def upgrade(
    db: Database, revision: str = "head", key_provider: KeyProviderFactory | None = None
) -> None:
    def run(connection: Connection) -> None:
        command.upgrade(_config(connection, key_provider), revision)
        # Partitions are time-dependent, so every migrate (not only new revisions) tops them up.
        for table in PARTITIONED_TABLES:
            ensure_monthly_partitions(connection, table)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("ultrachat.storage") / "migrations")
    )
    return ScriptDirectory.from_config(config).get_current_head()


async def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)
