"""Apply Alembic migrations to the configured database (``ultrachat migrate``)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from ultrachat.storage.database import Database
from ultrachat.storage.partitions import PARTITIONED_TABLES, ensure_monthly_partitions


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("ultrachat.storage") / "migrations")
    )
    config.attributes["connection"] = connection
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    def run(connection: Connection) -> None:
        command.upgrade(_config(connection), revision)
        # Partitions are time-dependent, so every migrate (not only new revisions) tops them up.
        for table in PARTITIONED_TABLES:
            ensure_monthly_partitions(connection, table)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)
