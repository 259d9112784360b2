"""What every ``ultrachat`` command shares: settings, running a coroutine, recording actions.

Every failure the operator can cause (a bad setting, an unreachable database) ends in one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, TypeVar

import click

from ultrachat.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from ultrachat.storage import Database

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def run(factory: Callable[[Settings], Coroutine[object, object, T]]) -> T:
    settings = settings_or_exit()
    try:
        return asyncio.run(factory(settings))
    except click.ClickException:
        raise
    except (OSError, ConnectionError) as exc:
        raise click.ClickException(f"cannot reach a backend: {exc}") from None
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException(f"{type(exc).__name__}: {message}") from None


async def forget_cached(settings: Settings, keys: list[tuple[str, str]]) -> str | None:
    """Have every running node drop ``keys`` (resource, key) from its read cache, L2 and
    every L1, for a change a command made behind the server's back. The invalidation is the
    one a write in a server makes (it waits for the nodes' acknowledgements, up to the
    usual timeout). Possible only over Redis: the embedded server's cache lives in its own
    process, where only the TTL reaches it. None when done, else why not; the change itself
    is committed already, so that is a warning for the operator, not a failure."""
    if not settings.redis_url:
        return "no Redis is configured, and the server's cache is in its own process"
    from redis.asyncio import Redis

    from ultrachat.bus.redis import RedisBus
    from ultrachat.cache.remote import RedisTier
    from ultrachat.cache.tiered import TieredCache

    client = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    logging.disable(logging.WARNING)  # the bus and cache log for a server; one line is ours
    try:
        try:
            await client.ping()
        except Exception as exc:
            return f"Redis is unreachable ({type(exc).__name__})"
        bus = RedisBus(client, settings.redis_key_prefix)
        await bus.start()
        try:
            cache = TieredCache(
                settings.cache_config,
                bus,
                RedisTier(client, settings.redis_key_prefix, settings.cache_config),
                invalidation_timeout=settings.cache_invalidation_timeout_seconds,
            )
            await cache.start()
            try:
                await cache.invalidate(keys)
            finally:
                await cache.stop()
            return None if bus.healthy else "the bus failed while telling the nodes"
        finally:
            await bus.close()
    except Exception as exc:
        return f"telling the nodes failed ({type(exc).__name__})"
    finally:
        logging.disable(logging.NOTSET)
        await client.aclose()


async def audited(
    db: Database, event: str, target_type: str, target_id: str, **details: str
) -> None:
    """Record an operator's action; the CLI has no request, so no actor, ip or request id."""
    from ultrachat.audit import AuditLog

    await AuditLog(db).record(
        event,
        actor_id="",
        target_type=target_type,
        target_id=target_id,
        ip="",
        details={"via": "cli", **details},
    )
