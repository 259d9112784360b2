"""``ultrachat keys``: signing keys, the master key, and the data keys that seal columns."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import click

from ultrachat.cli.common import audited
from ultrachat.cli.common import run as run_async
from ultrachat.config import Settings

if TYPE_CHECKING:
    from ultrachat.crypto import DataKeyRing
    from ultrachat.crypto.inventory import KeyUsage
    from ultrachat.crypto.rewrap import Progress
    from ultrachat.storage import Database

T = TypeVar("T")


@click.group()
def keys() -> None:
    """Manage signing and encryption keys."""


async def _with_keys(
    settings: Settings, work: Callable[[Database, DataKeyRing], Awaitable[T]]
) -> T:
    from ultrachat.crypto.setup import data_key_ring
    from ultrachat.storage import Database

    db = Database(settings.effective_database_url)
    try:
        ring = data_key_ring(settings, db)
        await ring.start()
        try:
            return await work(db, ring)
        finally:
            await ring.stop()
    finally:
        await db.close()


@keys.command("rotate-jwt")
def rotate_jwt() -> None:
    """Make a new JWT signing key; tokens signed by the previous key stay valid until expiry."""

    async def run(settings: Settings) -> str:
        from ultrachat.auth.keys import rotate

        async def work(db: Database, ring: DataKeyRing) -> str:
            kid = await rotate(db, ring)
            await audited(db, "keys.jwt_rotated", "signing_key", kid)
            return kid

        return await _with_keys(settings, work)

    kid = run_async(run)
    click.echo(f"new signing key {kid}; nodes pick it up within a minute")


@keys.command("generate-master")
def generate_master() -> None:
    """Print a new random master key (for ULTRACHAT_MASTER_KEY or a key file)."""
    from ultrachat.crypto.master import new_master_key_text

    click.echo(new_master_key_text())


@keys.command("rotate-data")
@click.option(
    "--background",
    is_flag=True,
    help="Leave the re-wrap to the running servers instead of doing it here.",
)
def rotate_data(background: bool) -> None:
    """Make a new primary data key, then re-encrypt existing rows to it.

    Old keys keep decrypting until retired. Servers switch to the new key within
    ULTRACHAT_DATA_KEY_REFRESH_SECONDS; the re-wrap starts after that.
    """

    async def run(settings: Settings) -> int:
        async def work(db: Database, ring: DataKeyRing) -> int:
            key_id = await ring.rotate("operator")
            await audited(db, "keys.data_rotated", "data_key", str(key_id), reason="operator")
            click.echo(f"new primary data key {key_id}")
            if not background:
                await _rewrap_with_progress(settings, db, ring)
            return key_id

        return await _with_keys(settings, work)

    run_async(run)
    if background:
        click.echo("the servers re-wrap existing rows; follow with `ultrachat keys list`")


@keys.command("rewrap")
def rewrap() -> None:
    """Re-encrypt every row still under an older data key (resumes where a run stopped)."""

    async def run(settings: Settings) -> None:
        async def work(db: Database, ring: DataKeyRing) -> None:
            await _rewrap_with_progress(settings, db, ring)

        await _with_keys(settings, work)

    run_async(run)


async def _rewrap_with_progress(settings: Settings, db: Database, ring: DataKeyRing) -> None:
    """Run the re-wrap job with a progress bar per column; if a server holds a column's
    lease, follow its progress until it is done."""
    from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as ProgressBar

    from ultrachat.crypto.rewrap import RewrapJob

    with ProgressBar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("re-encrypted {task.fields[rewrapped]}"),
        TimeElapsedColumn(),
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def show(progress: Progress) -> None:
            if progress.column not in tasks:
                tasks[progress.column] = bar.add_task(progress.column, total=None, rewrapped=0)
            bar.update(
                tasks[progress.column],
                total=progress.total,
                completed=progress.total if progress.finished else progress.scanned,
                rewrapped=progress.rewrapped,
                description=progress.column
                + ("" if progress.runner in ("", owner) else f" (run by {progress.runner})"),
            )

        owner = f"cli:{socket.gethostname()}:{os.getpid()}"
        grace = timedelta(seconds=settings.data_key_refresh_seconds + 2)
        waiting = bar.add_task(
            f"waiting {grace.total_seconds():.0f} s for every node to use key {ring.primary_id}",
            total=None,
            rewrapped="",
        )
        job = RewrapJob(
            db,
            ring,
            owner=owner,
            batch_size=settings.rewrap_batch_size,
            grace=grace,
            on_progress=show,
        )
        await job.wait_for_grace()
        bar.remove_task(waiting)
        while True:
            results = await job.run()
            corrupt = sum(r.corrupt for r in results)
            if all(r.finished for r in results):
                break
            await asyncio.sleep(1.0)  # another runner holds a column: follow it
    if corrupt:
        raise click.ClickException(
            f"{corrupt} rows failed to decrypt and were left as they are (see the server log)"
        )
    click.echo(f"every row is sealed with data key {ring.primary_id}")


@keys.command("list")
def list_keys() -> None:
    """Every data key with its state, encryptions used and rows per sealed column."""

    async def run(settings: Settings) -> list[KeyUsage]:
        from ultrachat.crypto.inventory import key_usage
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url)
        try:
            return await key_usage(db)
        finally:
            await db.close()

    from rich.console import Console
    from rich.table import Table

    from ultrachat.crypto.columns import SEALED_COLUMNS

    usage = run_async(run)
    table = Table("key", "state", "created", "uses", *(c.name for c in SEALED_COLUMNS), "rows")
    for key in usage:
        table.add_row(
            str(key.id),
            key.state,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.uses:,}",
            *(f"{key.rows.get(c.name, 0):,}" for c in SEALED_COLUMNS),
            f"{key.total_rows:,}",
        )
    Console().print(table)


@keys.command("retire")
@click.argument("key_id", type=int)
def retire_key(key_id: int) -> None:
    """Erase a data key; refused while it is the primary or any row still uses it."""

    async def run(settings: Settings) -> None:
        from ultrachat.crypto.inventory import retire
        from ultrachat.errors import UltraChatError
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url)
        try:
            try:
                grace = timedelta(seconds=settings.data_key_refresh_seconds + 2)
                await retire(db, key_id, grace)
            except UltraChatError as exc:
                raise click.ClickException(exc.message) from None
            await audited(db, "keys.data_retired", "data_key", str(key_id))
        finally:
            await db.close()

    run_async(run)
    click.echo(f"data key {key_id} is retired and its key material erased")
