"""The ``ultrachat`` command: serve, migrate, and operator tasks.

Every failure the operator can cause (a bad setting, an unreachable database) ends in one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, TypeVar

import click

from ultrachat.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from ultrachat.storage.partition_admin import PartitionInfo

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _run(factory: Callable[[Settings], Coroutine[object, object, T]]) -> T:
    settings = _settings()
    try:
        return asyncio.run(factory(settings))
    except click.ClickException:
        raise
    except (OSError, ConnectionError) as exc:
        raise click.ClickException(f"cannot reach a backend: {exc}") from None
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException(f"{type(exc).__name__}: {message}") from None


@click.group()
def main() -> None:
    """UltraChat: a self-hostable real-time chat platform."""


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema to the newest version."""

    async def run(settings: Settings) -> str | None:
        from ultrachat.storage import Database
        from ultrachat.storage.migrate import current_revision, upgrade

        db = Database(settings.effective_database_url)
        try:
            await upgrade(db)
            return await current_revision(db)
        finally:
            await db.close()

    revision = _run(run)
    click.echo(f"database schema is at {revision}")


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: ULTRACHAT_HOST).")
@click.option("--port", default=None, type=int, help="Port (default: ULTRACHAT_PORT).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Serve the API and WebSocket endpoint."""
    import uvicorn

    settings = _settings()
    if workers > 1 and not settings.redis_url:
        raise click.ClickException(
            "--workers > 1 needs ULTRACHAT_REDIS_URL: workers share state through Redis"
        )
    _preflight(settings)
    uvicorn.run(
        "ultrachat.gateway.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        ws_ping_interval=settings.ws_ping_interval_seconds,
        ws_ping_timeout=settings.ws_ping_interval_seconds,
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=10,
    )


def _preflight(settings: Settings) -> None:
    """Refuse to start, in one line, on the two mistakes that would end in a traceback."""
    from sqlalchemy.engine.url import make_url

    from ultrachat.storage import Database
    from ultrachat.storage.migrate import current_revision

    async def check() -> str | None:
        db = Database(settings.effective_database_url)
        try:
            if not await db.ping(within=5.0):
                url = make_url(settings.effective_database_url)
                return f"cannot reach the database at {url.render_as_string(hide_password=True)}"
            if await current_revision(db) is None:
                return "the database has no schema yet: run `ultrachat migrate` first"
            return None
        finally:
            await db.close()

    problem = asyncio.run(check())
    if problem:
        raise click.ClickException(problem)


@main.group()
def keys() -> None:
    """Manage signing and encryption keys."""


@keys.command("rotate-jwt")
def rotate_jwt() -> None:
    """Make a new JWT signing key; tokens signed by the previous key stay valid until expiry."""

    async def run(settings: Settings) -> str:
        from ultrachat.auth.keys import rotate
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url)
        try:
            return await rotate(db)
        finally:
            await db.close()

    kid = _run(run)
    click.echo(f"new signing key {kid}; nodes pick it up within a minute")


@main.group()
def partitions() -> None:
    """PostgreSQL's monthly partitions of the time-series tables (docs/database.md)."""


_NO_PARTITIONS = "partitions are a PostgreSQL feature: this SQLite database keeps plain tables"


@partitions.command("list")
@click.option(
    "--estimate",
    is_flag=True,
    help="Show the planner's row estimates instead of counting rows (fast on big tables).",
)
def partitions_list(estimate: bool) -> None:
    """Each partition with its range (UTC), row count and size on disk."""

    async def run(settings: Settings) -> list[PartitionInfo] | None:
        from ultrachat.storage import Database
        from ultrachat.storage.partition_admin import list_partitions

        if not settings.is_postgres:
            return None
        db = Database(settings.effective_database_url, 1)
        try:
            return await list_partitions(db.engine, exact=not estimate)
        finally:
            await db.close()

    found = _run(run)
    if found is None:
        click.echo(f"{_NO_PARTITIONS}; nothing to list")
    elif not found:
        click.echo("no partitioned tables yet: run `ultrachat migrate` first")
    else:
        _print_partitions(found, estimate)


def _print_partitions(found: list[PartitionInfo], estimated: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("Table", "Partition", "From", "To", "Rows", "Size")
    table.columns[4].justify = table.columns[5].justify = "right"
    for p in found:
        rows = "?" if p.rows is None else f"{'~' if estimated else ''}{p.rows:,}"
        start = "DEFAULT" if p.is_default else (f"{p.lower:%Y-%m-%d}" if p.lower else "?")
        end = "" if p.is_default else (f"{p.upper:%Y-%m-%d}" if p.upper else "?")
        table.add_row(p.table, p.name, start, end, rows, _size(p.size_bytes))
    # Piped output (scripts, tests) gets room for every column rather than the 80-column guess.
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _months(value: str | None) -> int:
    if value is None:
        raise click.ClickException(
            "--months N is required: partitions entirely older than N months are dropped"
        )
    try:
        months = int(value)
    except ValueError:
        raise click.ClickException(
            f"--months must be a whole number of months, at least 1 (got {value!r})"
        ) from None
    if months < 1:
        raise click.ClickException(
            f"--months must be at least 1 (got {months}): the current month is never dropped"
        )
    return months


@partitions.command("drop-older-than")
@click.option("--months", "months_text", metavar="N", help="Months of data to keep (at least 1).")
def partitions_drop_older_than(months_text: str | None) -> None:
    """Detach and drop every partition entirely older than N months.

    Never the current month's partition, later ones or the DEFAULT partition.
    """
    months = _months(months_text)

    async def run(settings: Settings) -> list[str] | None:
        from ultrachat.storage import Database
        from ultrachat.storage.partition_admin import PartitionError, drop_older_than

        if not settings.is_postgres:
            return None
        db = Database(settings.effective_database_url, 1)
        try:
            return await drop_older_than(db.engine, months)
        except PartitionError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            await db.close()

    dropped = _run(run)
    if dropped is None:
        raise click.ClickException(f"{_NO_PARTITIONS}; nothing was dropped")
    from ultrachat.storage.partition_admin import retention_cutoff

    before = f"{retention_cutoff(months):%Y-%m-%d}"
    if dropped:
        names = ", ".join(dropped)
        count = f"{len(dropped)} partition{'' if len(dropped) == 1 else 's'}"
        click.echo(f"dropped {count} entirely older than {before}: {names}")
    else:
        click.echo(f"no partition is entirely older than {before}; nothing dropped")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
