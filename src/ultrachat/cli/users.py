"""``ultrachat users``: admin accounts."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ultrachat.cli.common import audited, forget_cached, settings_or_exit
from ultrachat.cli.common import run as run_async
from ultrachat.config import Settings

if TYPE_CHECKING:
    pass


@click.group()
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
            await audited(db, "admin.user_created", "user", user.id, role="admin")
            return user.id
        except UltraChatError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            hasher.close()
            await db.close()

    user_id = run_async(run)
    click.echo(f"created admin {username} ({user_id})")


@users.command("grant-admin")
@click.argument("username")
def users_grant_admin(username: str) -> None:
    """Give an existing account the admin role."""

    async def run(settings: Settings) -> tuple[str, str, str | None]:
        from ultrachat.auth.service import grant_role
        from ultrachat.cache.config import USER_PROFILES
        from ultrachat.errors import UltraChatError
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url, 1)
        try:
            user, previous = await grant_role(db, username, "admin")
            if previous == "admin":
                return user.id, previous, None
            await audited(
                db, "admin.role_granted", "user", user.id, role="admin", previous=previous
            )
        except UltraChatError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            await db.close()
        # The profile (GET /users/me shows the role) is cached on the running nodes.
        return user.id, previous, await forget_cached(settings, [(USER_PROFILES, user.id)])

    user_id, previous, not_forgotten = run_async(run)
    if previous == "admin":
        click.echo(f"{username} ({user_id}) is already an admin")
        return
    click.echo(f"{username} ({user_id}) is now an admin (was {previous})")
    if not_forgotten:
        ttl = settings_or_exit().cache_config.resource("user-profiles").ttl
        click.echo(
            f"note: running servers may show the old role in /users/me for up to {ttl:.0f} s:"
            f" {not_forgotten}",
            err=True,
        )
