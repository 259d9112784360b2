"""``ultrachat migrate`` and ``ultrachat serve``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from ultrachat.cli.common import run as run_async
from ultrachat.cli.common import settings_or_exit
from ultrachat.config import Settings

if TYPE_CHECKING:
    pass


@click.command()
def migrate() -> None:
    """Create or upgrade the database schema to the newest version."""

    async def run(settings: Settings) -> str | None:
        from ultrachat.crypto.setup import key_provider
        from ultrachat.storage import Database
        from ultrachat.storage.migrate import current_revision, upgrade

        db = Database(settings.effective_database_url)
        try:
            await upgrade(db, key_provider=lambda: key_provider(settings))
            return await current_revision(db)
        finally:
            await db.close()

    revision = run_async(run)
    click.echo(f"database schema is at {revision}")


@click.command()
@click.option("--host", default=None, help="Interface to bind (default: ULTRACHAT_HOST).")
@click.option("--port", default=None, type=int, help="Port (default: ULTRACHAT_PORT).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Serve the API and WebSocket endpoint."""
    import logging.config

    import uvicorn

    from ultrachat.logs import logging_config

    settings = settings_or_exit()
    # Installed now for the preflight's warnings, and again by uvicorn in each worker.
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
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
        # The native edge takes the upgraded socket (realtime/edge.py); else websockets'
        # Sans-I/O protocol, the leanest of uvicorn's own (bench/idle_memory.py).
        ws="ultrachat.realtime.edge:EdgeProtocol"
        if settings.ws_edge == "native"
        else "websockets-sansio",
        # Levels too (uvicorn's log_level would lower its loggers to DEBUG: frames, tokens).
        log_config=logging_config(settings.log_level, settings.log_format),
        access_log=False,  # EdgeMiddleware logs one line per request (ultrachat.access)
        server_header=False,
        ws_ping_interval=settings.ws_ping_interval_seconds,
        ws_ping_timeout=settings.ws_ping_interval_seconds,
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=10,
    )


def _preflight(settings: Settings) -> None:
    """Refuse to start, in one line, on the mistakes that would end in a traceback."""
    from sqlalchemy import select
    from sqlalchemy.engine.url import make_url

    from ultrachat.crypto.master import MasterKeyError
    from ultrachat.crypto.models import RETIRED, DataKey
    from ultrachat.crypto.setup import key_provider
    from ultrachat.storage import Database
    from ultrachat.storage.migrate import current_revision, head_revision

    async def check() -> str | None:
        try:
            # A missing key is named first; SQLite's generated key waits for a usable database.
            provider = key_provider(settings) if settings.is_postgres else None
        except MasterKeyError as exc:
            return str(exc)
        db = Database(settings.effective_database_url)
        try:
            if not await db.ping(within=5.0):
                url = make_url(settings.effective_database_url)
                return f"cannot reach the database at {url.render_as_string(hide_password=True)}"
            revision = await current_revision(db)
            if revision is None:
                return "the database has no schema yet: run `ultrachat migrate` first"
            if revision != head_revision():
                return f"the database schema is at {revision}: run `ultrachat migrate` first"
            try:
                provider = provider or key_provider(settings)
            except MasterKeyError as exc:
                return str(exc)
            async with db.sessions() as session:
                wrapped_by = await session.scalars(
                    select(DataKey.kek_id).where(DataKey.state != RETIRED)
                )
                if any(kek != provider.key_id for kek in wrapped_by.all()):
                    return (
                        "the data keys were wrapped by another master key: set the"
                        " deployment's ULTRACHAT_MASTER_KEY (or ULTRACHAT_MASTER_KEY_FILE)"
                    )
            return None
        finally:
            await db.close()

    problem = asyncio.run(check())
    if problem:
        raise click.ClickException(problem)
