"""``ultrachat partitions list`` and ``drop-older-than``, as an operator runs them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.storage.partitioning import (
    add_months,
    insert_message,
    migrated_postgres,
    relations,
    this_month,
)
from tests.support.cli import ultrachat
from ultrachat.cli import main
from ultrachat.storage import new_id
from ultrachat.storage.partitions import PARTITIONED_TABLES, partition_name, utc_midnight


def invoke(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """The command in-process, on an embedded SQLite database under ``tmp_path``."""
    env = {"ULTRACHAT_DATA_DIR": str(tmp_path / "var"), "ULTRACHAT_DATABASE_URL": ""}
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("months", "message"),
    [
        ("0", "Error: --months must be at least 1 (got 0): the current month is never dropped"),
        ("-1", "Error: --months must be at least 1 (got -1): the current month is never dropped"),
        ("three", "Error: --months must be a whole number of months, at least 1 (got 'three')"),
        ("1.5", "Error: --months must be a whole number of months, at least 1 (got '1.5')"),
        (
            None,
            "Error: --months N is required: partitions entirely older than N months are dropped",
        ),
    ],
)
def test_bad_months_are_one_line_errors(tmp_path: Path, months: str | None, message: str) -> None:
    args = ["partitions", "drop-older-than"] + ([] if months is None else ["--months", months])
    assert invoke(tmp_path, *args) == (1, "", message + "\n")
    assert not (tmp_path / "var").exists(), "input is checked before the database is touched"


def test_sqlite_has_no_partitions_and_says_so_in_one_line(tmp_path: Path) -> None:
    plain = "partitions are a PostgreSQL feature: this SQLite database keeps plain tables"
    assert invoke(tmp_path, "partitions", "list") == (0, f"{plain}; nothing to list\n", "")
    dropped = invoke(tmp_path, "partitions", "drop-older-than", "--months", "3")
    assert dropped == (1, "", f"Error: {plain}; nothing was dropped\n")


async def test_list_and_drop_on_postgres(tmp_path: Path) -> None:
    async with migrated_postgres() as db:
        for table in PARTITIONED_TABLES:
            await add_months(db, table, this_month(-3))
        channel = new_id()
        await insert_message(db, utc_midnight(this_month(-3)) + timedelta(days=1), channel, 1)
        for seq in (2, 3):
            await insert_message(
                db, utc_midnight(this_month(0)) + timedelta(seconds=seq), channel, seq
            )

        listed = ultrachat(tmp_path, "partitions", "list", database_url=db.url)
        assert listed.returncode == 0, listed.stderr
        rows = {
            line.split("│")[2].strip(): line for line in listed.stdout.splitlines() if "│" in line
        }
        current = partition_name("messages", this_month(0))
        start, end = f"{this_month(0):%Y-%m-%d}", f"{this_month(1):%Y-%m-%d}"
        assert rows[current].split("│")[3:6] == [f" {start} ", f" {end} ", "    2 "]
        assert "DEFAULT" in rows["messages_default"]
        assert set(rows) >= {
            partition_name(t, m)
            for t in PARTITIONED_TABLES
            for m in (this_month(-3), this_month(0), this_month(3))
        }

        old = [partition_name(t, this_month(-3)) for t in PARTITIONED_TABLES]
        dropped = ultrachat(
            tmp_path, "partitions", "drop-older-than", "--months", "2", database_url=db.url
        )
        assert dropped.returncode == 0, dropped.stderr
        before = f"{this_month(-2):%Y-%m-%d}"
        assert dropped.stdout == (
            f"dropped {len(old)} partitions entirely older than {before}: {', '.join(old)}\n"
        )
        assert not set(old) & await relations(db)

        again = ultrachat(
            tmp_path, "partitions", "drop-older-than", "--months", "2", database_url=db.url
        )
        assert again.stdout == f"no partition is entirely older than {before}; nothing dropped\n"
