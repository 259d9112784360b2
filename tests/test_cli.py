"""The ``ultrachat`` command, run as an operator would: in a process of its own."""

from __future__ import annotations

import re
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.support.cli import ultrachat as run


def head_revision() -> str:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("ultrachat.storage") / "migrations")
    )
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("name", "value"),
    [("port", "abc"), ("database_url", "mysql://root@db/chat"), ("redis_url", "memcached://x")],
)
def test_a_bad_setting_stops_migrate_with_one_line(tmp_path: Path, name: str, value: str) -> None:
    result = run(tmp_path, "migrate", **{name: value})
    assert_one_line_failure(result, f"ULTRACHAT_{name.upper()}")
    assert not (tmp_path / "var").exists(), "nothing may be created before settings are valid"


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", database_url="postgresql+asyncpg://u@127.0.0.1:1/none")
    assert_one_line_failure(result, "cannot reach a backend")


def test_migrate_creates_a_fresh_sqlite_database_and_prints_the_revision(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'chat.db'}"
    expected = f"database schema is at {head_revision()}\n"
    first = run(tmp_path, "migrate", database_url=url)
    assert (first.returncode, first.stdout, first.stderr) == (0, expected, "")
    assert (tmp_path / "fresh" / "chat.db").is_file()
    # Migrating an up-to-date database changes nothing and says so.
    again = run(tmp_path, "migrate", database_url=url)
    assert (again.returncode, again.stdout) == (0, expected)


def test_keys_rotate_jwt_on_the_default_database(tmp_path: Path) -> None:
    migrated = run(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "var" / "ultrachat.db").is_file(), "the default is SQLite under data_dir"
    result = run(tmp_path, "keys", "rotate-jwt")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"new signing key [0-9a-f-]{36}; nodes pick it up within a minute\n", result.stdout
    )


def test_serve_refuses_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", database_url="postgresql+asyncpg://u@127.0.0.1:1/none")
    assert_one_line_failure(result, "cannot reach the database at postgresql+asyncpg://")


def test_serve_refuses_a_database_without_schema_in_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "serve")
    assert_one_line_failure(result, "run `ultrachat migrate` first")
