"""A stolen database dump holds no message text and no private key.

Canary strings go in through the API (a message, its edit, a thread reply, and a signing key
rotation), then the database is dumped as a thief would: ``pg_dump`` for PostgreSQL, the raw
file (and its WAL) for SQLite. A channel name, which is not secret, is the control: it must
be found, or the dump saw nothing and the test proves nothing.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from sqlalchemy.engine.url import make_url

from tests.auth.factories import account
from tests.chat.factories import API, create, send
from tests.support.deployment import Deployment
from ultrachat.auth.keys import rotate


def dump(deployment: Deployment) -> bytes:
    url = make_url(deployment.backend.database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    result = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            url.database or "",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout


async def test_no_canary_reaches_the_database(deployment: Deployment) -> None:
    client, runtime = deployment.client, deployment.runtime
    canaries = [f"canary-{name}-{secrets.token_hex(8)}" for name in ("sent", "edit", "reply")]
    control = f"visible-{secrets.token_hex(4)}"
    alice = await account(client)
    channel = await create(client, alice, name=control)
    sent = await send(client, alice, channel["id"], f"the secret is {canaries[0]}")
    edited = await client.patch(
        f"{API}/messages/{sent['id']}",
        json={"body": f"edited to {canaries[1]}"},
        headers=alice.headers,
    )
    assert edited.status_code == 200, edited.text
    await send(client, alice, channel["id"], canaries[2], thread_id=sent["id"])
    await rotate(runtime.db, runtime.data_keys)  # a second private key, sealed like the first
    await runtime.committer.stop()  # every queued write is committed before the dump
    await runtime.committer.start()

    dumped = dump(deployment)
    assert control.encode() in dumped  # the dump sees the data
    for canary in canaries:
        assert canary.encode() not in dumped
        assert canary.encode().hex().encode() not in dumped  # nor as a hex bytea literal
    assert b"PRIVATE KEY" not in dumped
    assert b"PRIVATE KEY".hex().encode() not in dumped
