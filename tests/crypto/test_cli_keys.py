"""``ultrachat keys``: list, rotate-data with its progress, rewrap and retire, as an operator."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.auth.factories import account
from tests.chat.factories import create, history, send
from tests.support.app import running_app, settings_for
from tests.support.backends import Backend
from tests.support.cli import ultrachat


def key_rows(listing: str) -> dict[int, tuple[str, int]]:
    """(state, total rows) by key id, from the `keys list` table."""
    found = {}
    for line in listing.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0].isdigit():
            found[int(cells[0])] = (cells[1], int(cells[-1].replace(",", "")))
    return found


async def test_rotate_rewrap_list_and_retire_on_the_default_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    url = f"sqlite+aiosqlite:///{data_dir / 'ultrachat.db'}"
    cli = {"database_url": url, "data_key_refresh_seconds": "0.1"}
    # The embedded default: no master key given, so the server and the CLI share the
    # generated data_dir/master.key.
    settings = settings_for(Backend("sqlite", url, "", "uc:"), master_key="", data_dir=data_dir)
    async with running_app(settings) as (_app, client):
        alice = await account(client)
        channel = await create(client, alice)
        for i in range(12):
            await send(client, alice, channel["id"], f"before rotation {i}")

        listed = ultrachat(tmp_path, "keys", "list", **cli)
        assert listed.returncode == 0, listed.stderr
        assert key_rows(listed.stdout) == {1: ("primary", 12 + 13 + 1)}  # bodies, frames, jwt

        refused = ultrachat(tmp_path, "keys", "retire", "1", **cli)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            "Error: data key 1 is the primary key; rotate first (keys rotate-data)"
        )

        rotated = ultrachat(tmp_path, "keys", "rotate-data", **cli)
        assert rotated.returncode == 0, rotated.stderr
        assert "new primary data key 2" in rotated.stdout
        assert "every row is sealed with data key 2" in rotated.stdout
        assert key_rows(ultrachat(tmp_path, "keys", "list", **cli).stdout) == {
            1: ("active", 0),
            2: ("primary", 26),
        }
        # The server reads every row under the new key, without a restart.
        page = await history(client, alice, channel["id"], after_seq=0)
        assert [m["body"] for m in page] == [f"before rotation {i}" for i in range(12)]

        retired = ultrachat(tmp_path, "keys", "retire", "1", **cli)
        assert retired.returncode == 0, retired.stderr
        assert key_rows(ultrachat(tmp_path, "keys", "list", **cli).stdout)[1] == ("retired", 0)
        again = ultrachat(tmp_path, "keys", "retire", "1", **cli)
        assert again.stderr.strip() == "Error: no live data key 1"

        audit = ultrachat(tmp_path, "audit", "export", **cli)
        assert '"keys.data_rotated"' in audit.stdout and '"keys.data_retired"' in audit.stdout


async def test_retire_refuses_a_key_rows_still_use(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    url = f"sqlite+aiosqlite:///{data_dir / 'ultrachat.db'}"
    cli = {"database_url": url, "data_key_refresh_seconds": "0.1"}
    settings = settings_for(Backend("sqlite", url, "", "uc:"), master_key="", data_dir=data_dir)
    async with running_app(settings) as (_app, client):
        alice = await account(client)
        await send(client, alice, (await create(client, alice))["id"], "still under key 1")
    rotated = ultrachat(tmp_path, "keys", "rotate-data", "--background", **cli)
    assert rotated.returncode == 0, rotated.stderr
    # Just rotated: a node may still be encrypting with key 1 for a refresh interval. Told
    # that nodes refresh every minute, so that how long this process takes to start (over
    # 2 s on a loaded machine) cannot carry it past the grace of 0.1 s + 2 s.
    refused = ultrachat(
        tmp_path, "keys", "retire", "1", **{**cli, "data_key_refresh_seconds": "60"}
    )
    assert refused.returncode == 1
    assert "was primary until moments ago" in refused.stderr
    await asyncio.sleep(2.2)  # the refresh interval (0.1 s) plus the 2 s margin
    refused = ultrachat(tmp_path, "keys", "retire", "1", **cli)
    assert refused.returncode == 1
    assert "still seals rows in channel_events.data, messages.body, signing_keys" in (
        refused.stderr
    )
    assert ultrachat(tmp_path, "keys", "rewrap", **cli).returncode == 0
    assert ultrachat(tmp_path, "keys", "retire", "1", **cli).returncode == 0
