"""``ultrachat partitions``: PostgreSQL's monthly partitions (docs/database.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ultrachat.cli.common import run as run_async
from ultrachat.config import Settings

if TYPE_CHECKING:
    from ultrachat.storage.partition_admin import PartitionInfo


@click.group()
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

    found = run_async(run)
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

    dropped = run_async(run)
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
