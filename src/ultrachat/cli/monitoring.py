"""``ultrachat slo``: the plan's KPIs against the metrics history (docs/monitoring.md)."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from ultrachat.cli.common import run as run_async
from ultrachat.config import Settings

if TYPE_CHECKING:
    from ultrachat.monitoring.slo import SloReport

_DURATION = re.compile(r"(\d{1,7})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=90)
_STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "no data": "yellow"}


def parse_window(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``7d`` or ``2w``, from one minute to 90 days."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise click.ClickException(
            f"--window: {text!r} is not a duration: a number and a unit, as in 30m, 1h or 7d"
        )
    window = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise click.ClickException(f"--window: {text} is outside 1m to 90d")
    return window


@click.command("slo")
@click.option(
    "--window",
    "window_text",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="How far back from now: 30m, 1h, 7d, ... (1 minute to 90 days).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def slo(window_text: str, as_json: bool) -> None:
    """Compare the window's figures, all nodes, with the plan's KPIs: p99 API response
    time under 100 ms, error rate under 0.01%, cache hit rate over 90%, uptime 99.99%.

    Exit status: 0 when every line passes, 1 when any fails or has no data (or on error).
    """
    window = parse_window(window_text)

    async def run(settings: Settings) -> SloReport:
        from ultrachat.monitoring.slo import slo_report
        from ultrachat.storage import Database

        db = Database(settings.effective_database_url, 1)
        try:
            return await slo_report(db, window)
        finally:
            await db.close()

    report = run_async(run)
    if as_json:
        from ultrachat.monitoring.schemas import report_out

        click.echo(report_out(report).model_dump_json(indent=2))
    else:
        _print_report(report)
    sys.exit(0 if report.passed else 1)


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:.4g}%"


def _print_report(report: SloReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("Objective", "Figure", "Target", "Status")
    table.columns[1].justify = "right"
    for line in report.lines:
        status = f"[{_STATUS_STYLE[line.status]}]{line.status.upper()}[/]"
        table.add_row(line.name, _figure(line.value, line.unit), line.target, status)
    click.echo(f"SLO from {report.since:%Y-%m-%d %H:%M:%S} to {report.until:%Y-%m-%d %H:%M:%S} UTC")
    click.echo(
        f"{report.snapshots} snapshots from {report.nodes} node(s), {report.requests} API requests"
    )
    Console(width=None if sys.stdout.isatty() else 100).print(table)
