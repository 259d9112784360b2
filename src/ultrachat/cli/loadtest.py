"""``ultrachat loadtest``: drive a server (or nodes it starts) with users, sockets and messages.

The package is imported only when the command runs. Every option is also a key of the TOML
scenario file (``--scenario``); options given on the command line win over the file.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

# (option, metavar, help); each maps to the scenario key of the same name (dashes → underscores).
OPTIONS: list[tuple[str, str, str]] = [
    ("--urls", "URLS", "Server base URLs, comma-separated (default http://127.0.0.1:8000)."),
    ("--spawn-nodes", "N", "Start N local server nodes from this environment instead of --urls."),
    ("--users", "N", "Users to create (or reuse from --state)."),
    ("--connections-per-user", "N", "WebSocket connections per user."),
    ("--channels", "N", "Channels to create."),
    ("--members", "SPEC", "Members per channel: N, A:B (uniform) or loguniform:A:B."),
    ("--rate", "MSGS_PER_S", "Messages per second, all connections together."),
    ("--shape", "SHAPE", "steady, ramp[:SECONDS] or burst[:EVERY[:LENGTH]]."),
    ("--duration", "SECONDS", "Sending phase: seconds (or 30s, 2m, 1h)."),
    ("--rest-mix", "MIX", "REST requests/s per route, e.g. history=5,channels=2,me=1."),
    ("--processes", "N", "Worker processes (each holds a share of the connections)."),
    ("--source-addresses", "ADDRS", "Local addresses to connect from, e.g. 127.0.0.1-127.0.0.8."),
    ("--body-bytes", "N", "Message body size."),
    ("--connect-concurrency", "N", "Handshakes in flight per process."),
    ("--connect-timeout", "SECONDS", "Seconds for a connection to reach 'ready'."),
    (
        "--drain-timeout",
        "SECONDS",
        "After sending, stop waiting for the last acks and deliveries once none has arrived"
        " for this long (15; a backlog still arriving is waited for, up to 10 minutes).",
    ),
    ("--setup-concurrency", "N", "REST calls in flight while creating users and channels."),
    ("--seed", "N", "Random seed (channel membership, who sends where)."),
    ("--fault-restart-after", "SECONDS", "Seconds between killing a node and starting it again."),
    (
        "--state",
        "FILE",
        "JSON file of users, tokens and channels: written, then reused by later runs.",
    ),
    ("--report-json", "FILE", "Write the report as JSON here."),
    ("--report-md", "FILE", "Write the report as markdown here."),
]


def _options(command: Any) -> Any:
    for flag, metavar, text in reversed(OPTIONS):
        command = click.option(flag, default=None, metavar=metavar, help=text)(command)
    return command


@click.command()
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML scenario file; its keys are these options' names.",
)
@click.option(
    "--url", "url", default=None, metavar="URL", help="One server base URL (same as --urls)."
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="kill:NODE@SECONDS",
    help="kill:NODE@SECONDS: kill -9 a spawned node that far into sending, then restart it.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Live view (default: when stderr is a terminal).",
)
@click.option(
    "--retry-refused/--no-retry-refused",
    default=None,
    help="Send a refused send again after its retry_after_ms, as a client does (default),"
    " or count the refusal and drop the message.",
)
@_options
def loadtest(
    scenario_file: Path | None,
    url: str | None,
    faults: tuple[str, ...],
    progress: bool | None,
    retry_refused: bool | None,
    **flags: str | None,
) -> None:
    """Load-test UltraChat: users, WebSockets, messages and REST; check every delivery.

    Exits 1 when a delivery was lost or duplicated, a connection failed or a send was never
    acked. docs/benchmarks.md ("Load testing") has the plan's targets as commands.
    """
    from rich.console import Console

    from ultrachat.loadtest.coordinator import RunError, run
    from ultrachat.loadtest.nodes import NodeError
    from ultrachat.loadtest.report import render_terminal
    from ultrachat.loadtest.scenario import ScenarioError, load
    from ultrachat.loadtest.setup import SetupError

    overrides: dict[str, Any] = dict(flags)
    if url is not None:
        overrides["urls"] = url if flags.get("urls") is None else f"{url},{flags['urls']}"
    if faults:
        overrides["faults"] = ",".join(faults)
    overrides["retry_refused"] = retry_refused
    try:
        scenario = load(scenario_file, overrides)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    err = Console(stderr=True)
    live = err.is_terminal if progress is None else progress
    try:
        result = asyncio.run(run(scenario, console=err, progress=live))
    except (ScenarioError, SetupError, RunError, NodeError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted") from None
    render_terminal(result, Console())
    if not result["ok"]:
        sys.exit(1)
