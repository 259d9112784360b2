"""``ultrachat audit``: verify and export the audit log (docs/security.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ultrachat.cli.common import run as run_async
from ultrachat.config import Settings

if TYPE_CHECKING:
    from ultrachat.audit.verify import Verdict


@click.group()
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

    verdict = run_async(run)
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

    seq, hash_ = run_async(run)
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

    run_async(run)
