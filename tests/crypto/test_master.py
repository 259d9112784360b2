"""Where the master key comes from, and what happens when there is none."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest

from tests.support.cli import ultrachat
from ultrachat.config import load_settings
from ultrachat.crypto import master
from ultrachat.crypto.master import MasterKeyError, parse_master_key
from ultrachat.crypto.setup import key_provider


def test_hex_and_both_base64_alphabets_are_accepted() -> None:
    raw = bytes(range(32))
    forms = [raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    assert {parse_master_key(form) for form in forms} == {raw}
    with pytest.raises(MasterKeyError):
        parse_master_key(base64.b64encode(raw[:16]).decode())


def test_sqlite_generates_a_private_key_file_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(data_dir=tmp_path / "var", master_key="")
    with caplog.at_level(logging.WARNING):
        first = key_provider(settings)
        again = key_provider(settings)
    path = tmp_path / "var" / "master.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first.key_id == again.key_id  # the same key, read back
    warnings = [r for r in caplog.records if "generated master key" in r.getMessage()]
    assert len(warnings) == 1
    master._warned.clear()


def test_a_key_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(bytes(32).hex() + "\n")
    settings = load_settings(master_key="", master_key_file=path)
    assert key_provider(settings).key_id == master.LocalMasterKey(bytes(32)).key_id
    with pytest.raises(MasterKeyError, match="cannot read"):
        key_provider(load_settings(master_key="", master_key_file=tmp_path / "missing"))


def test_postgres_without_a_master_key_refuses_to_start(tmp_path: Path) -> None:
    settings = load_settings(master_key="", database_url="postgresql+asyncpg://u@127.0.0.1:1/none")
    with pytest.raises(MasterKeyError, match="every node"):
        key_provider(settings)
    result = ultrachat(
        tmp_path, "serve", database_url="postgresql+asyncpg://u@127.0.0.1:1/none", master_key=""
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: set ULTRACHAT_MASTER_KEY or ULTRACHAT_MASTER_KEY_FILE: with PostgreSQL every"
        " node must share one master key (make one with: ultrachat keys generate-master)"
    ]


def test_generate_master_prints_a_usable_key(tmp_path: Path) -> None:
    result = ultrachat(tmp_path, "keys", "generate-master")
    assert result.returncode == 0
    assert len(parse_master_key(result.stdout)) == 32
