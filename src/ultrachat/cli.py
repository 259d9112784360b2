"""The ``ultrachat`` command: serve, migrate, and operator tasks.

Every failure the operator can cause (a bad setting, an unreachable database) ends in one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import TypeVar

import click

from ultrachat.config import Settings, SettingsError, load_settings

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
