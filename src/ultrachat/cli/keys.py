"""``ultrachat keys``: signing and encryption keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ultrachat.cli.common import audited
from ultrachat.cli.common import run as run_async
from ultrachat.config import Settings

if TYPE_CHECKING:
    pass


@click.group()
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
            await audited(db, "keys.jwt_rotated", "signing_key", kid)
            return kid
        finally:
            await db.close()

    kid = run_async(run)
    click.echo(f"new signing key {kid}; nodes pick it up within a minute")
