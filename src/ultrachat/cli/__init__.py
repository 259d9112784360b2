"""The ``ultrachat`` command: serve, migrate, and operator tasks, one module per group."""

from __future__ import annotations

import click

from ultrachat.cli.audit import audit
from ultrachat.cli.keys import keys
from ultrachat.cli.loadtest import loadtest
from ultrachat.cli.monitoring import slo
from ultrachat.cli.partitions import partitions
from ultrachat.cli.server import migrate, serve
from ultrachat.cli.users import users


@click.group()
def main() -> None:
    """UltraChat: a self-hostable real-time chat platform."""


for command in (migrate, serve, keys, partitions, users, audit, slo, loadtest):
    main.add_command(command)

__all__ = ["main"]
