"""``ultrachat slo``: a table (or JSON) and an exit status a script can act on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from tests.monitoring.factories import hour_of
from tests.support.app import migrate, settings_for
from tests.support.backends import Backend
from tests.support.cli import ultrachat
from ultrachat.monitoring import history
from ultrachat.storage import Database


async def database_with(tmp_path: Path, **figures: object) -> str:
    """A migrated SQLite database holding the last hour of snapshots with ``figures``."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'slo.db'}"
    await migrate(settings_for(Backend("sqlite", url, "", "uc:")))
    db = Database(url, 1)
    try:
        for at, node, data in hour_of(datetime.now(UTC), **figures):  # type: ignore[arg-type]
            await history.append(db, at, node, data)
    finally:
        await db.close()
    return url


async def test_all_passing_exits_0(tmp_path: Path) -> None:
    url = await database_with(tmp_path, requests=1000, hits=99, lookups=100)
    result = ultrachat(tmp_path, "slo", database_url=url)
    assert result.returncode == 0, result.stderr
    for name in ("api_latency_p99", "error_rate", "cache_hit_rate", "uptime"):
        assert name in result.stdout
    assert result.stdout.count("PASS") == 4
    assert "60 snapshots from 1 node(s), 60000 API requests" in result.stdout

    as_json = ultrachat(tmp_path, "slo", "--window", "30m", "--json", database_url=url)
    assert as_json.returncode == 0, as_json.stderr
    report = orjson.loads(as_json.stdout)
    assert report["passed"] is True
    assert {line["status"] for line in report["lines"]} == {"pass"}
    assert report["snapshots"] == 30


async def test_a_failing_line_exits_1_and_bad_input_is_one_line(tmp_path: Path) -> None:
    url = await database_with(tmp_path, requests=1000, errors=5, hits=99, lookups=100)
    result = ultrachat(tmp_path, "slo", "--window", "1h", database_url=url)
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("FAIL") == 1 and result.stdout.count("PASS") == 3
    assert "0.5%" in result.stdout  # the figure, next to its target
    assert "< 0.01%" in result.stdout

    bad = ultrachat(tmp_path, "slo", "--window", "forever", database_url=url)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "Error: --window: 'forever' is not a duration: a number and a unit, as in 30m, 1h or 7d"
    ]
    too_long = ultrachat(tmp_path, "slo", "--window", "100d", database_url=url)
    assert too_long.returncode == 1
    assert too_long.stderr.strip() == "Error: --window: 100d is outside 1m to 90d"


async def test_no_data_is_not_a_pass(tmp_path: Path) -> None:
    url = await database_with(tmp_path)  # idle: snapshots, but no request nor lookup
    result = ultrachat(tmp_path, "slo", "--json", database_url=url)
    assert result.returncode == 1, result.stderr
    statuses = {line["name"]: line["status"] for line in orjson.loads(result.stdout)["lines"]}
    assert statuses == {
        "api_latency_p99": "no data",
        "error_rate": "no data",
        "cache_hit_rate": "no data",
        "uptime": "pass",
    }
    help_text = ultrachat(tmp_path, "slo", "--help").stdout
    assert "0 when every line passes, 1 when any fails or has no data" in help_text
