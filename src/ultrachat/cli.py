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
    from ultrachat.audit.verify import Verdict
    from ultrachat.storage import Database
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
            kid = await rotate(db)
            await _audited(db, "keys.jwt_rotated", "signing_key", kid)
            return kid
        finally:
            await db.close()

    kid = _run(run)
    click.echo(f"new signing key {kid}; nodes pick it up within a minute")


async def _audited(
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


@main.group()
def users() -> None:
    """Accounts and their roles."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("--password-stdin: no password on standard input")
        return password
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return str(password)


@users.command("create-admin")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create_admin(username: str, password_stdin: bool) -> None:
    """Create a new account with the admin role (prompts for its password)."""
    password = _read_password(password_stdin)

    async def run(settings: Settings) -> str:
        from ultrachat.auth.passwords import PasswordHasherPool
        from ultrachat.auth.service import create_admin
        from ultrachat.errors import UltraChatError
        from ultrachat.storage import Database

        hasher = PasswordHasherPool(
            settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
        )
        db = Database(settings.effective_database_url, 1)
        try:
            user = await create_admin(db, hasher, username, password)
            await _audited(db, "admin.user_created", "user", user.id, role="admin")
            return user.id
        except UltraChatError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            hasher.close()
            await db.close()

    user_id = _run(run)
    click.echo(f"created admin {username} ({user_id})")


@users.command("grant-admin")
@click.argument("username")
def users_grant_admin(username: str) -> None:
    """Give an existing account the admin role."""

    async def run(settings: Settings) -> tuple[str, str]:
        from ultrachat.auth.service import grant_role
        from ultrachat.errors import UltraChatError
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url, 1)
        try:
            user, previous = await grant_role(db, username, "admin")
            if previous != "admin":
                await _audited(
                    db, "admin.role_granted", "user", user.id, role="admin", previous=previous
                )
            return user.id, previous
        except UltraChatError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            await db.close()

    user_id, previous = _run(run)
    if previous == "admin":
        click.echo(f"{username} ({user_id}) is already an admin")
    else:
        click.echo(f"{username} ({user_id}) is now an admin (was {previous})")


@main.group()
def audit() -> None:
    """The tamper-evident audit log (docs/security.md)."""


def _anchor(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    seq, _, hash_ = value.partition(":")
    if not seq.isdigit() or len(hash_) != 64 or any(c not in "0123456789abcdef" for c in hash_):
        raise click.ClickException(
            f"--after must be SEQ:HASH as printed by `ultrachat audit head` (got {value!r})"
        )
    return int(seq), hash_


@audit.command("verify")
@click.option(
    "--after",
    "after_text",
    metavar="SEQ:HASH",
    help="Start after this record (a head saved by `audit head`): once retention has "
    "dropped the oldest months.",
)
def audit_verify(after_text: str | None) -> None:
    """Walk the whole hash chain; exit 1 naming the first bad record."""
    anchor = _anchor(after_text)

    async def run(settings: Settings) -> Verdict:
        from ultrachat.audit.verify import verify_chain
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url, 1)
        try:
            return await verify_chain(db, anchor)
        finally:
            await db.close()

    verdict = _run(run)
    if verdict.ok:
        click.echo(f"OK: {verdict.count} audit records, chain intact")
        return
    named = f"seq {verdict.bad_seq}" + (f" (id {verdict.bad_id})" if verdict.bad_id else "")
    click.echo(
        f"BAD: first bad record is {named}: {verdict.reason}; "
        f"{verdict.count} records before it are intact",
        err=True,
    )
    sys.exit(1)


@audit.command("head")
def audit_head() -> None:
    """Print the chain's head as SEQ:HASH, to keep somewhere an attacker cannot write."""

    async def run(settings: Settings) -> tuple[int, str]:
        from ultrachat.audit import repository
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url, 1)
        try:
            async with db.sessions() as session:
                return await repository.head(session)
        finally:
            await db.close()

    seq, hash_ = _run(run)
    click.echo(f"{seq}:{hash_}")


@audit.command("export")
@click.option("--since", "since_text", metavar="TIME", help="YYYY-MM-DD or ISO 8601 (UTC).")
def audit_export(since_text: str | None) -> None:
    """Write audit records (from --since on) to stdout as JSON lines, in seq order."""
    from datetime import datetime

    since: datetime | None = None
    if since_text is not None:
        from ultrachat.audit.schemas import parse_moment

        try:
            since = parse_moment(since_text)
        except ValueError as exc:
            raise click.ClickException(f"--since: {exc}") from None

    async def run(settings: Settings) -> int:
        import orjson

        from ultrachat.audit import repository
        from ultrachat.audit.schemas import record_json
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url, 1)
        count = 0
        out = sys.stdout.buffer
        try:
            async with db.sessions() as session:
                async for record in repository.walk(session, since):
                    out.write(orjson.dumps(record_json(record)) + b"\n")
                    count += 1
        finally:
            out.flush()
            await db.close()
        return count

    _run(run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
