"""``ultrachat users`` and ``ultrachat audit``, run as an operator would: in a process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy import text

from tests.auth.factories import PASSWORD
from tests.support.cli import ultrachat
from ultrachat.storage import Database

ADMIN_PASSWORD = "operator-chosen-passphrase"


def run(tmp_path: Path, url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return ultrachat(
        tmp_path, *args, stdin=stdin, database_url=url, argon2_memory_kib="64", argon2_time_cost="1"
    )


async def _execute(url: str, statement: str) -> None:
    db = Database(url)
    try:
        async with db.transaction() as session:
            await session.execute(text(statement))
    finally:
        await db.close()


async def test_users_and_audit_commands(tmp_path: Path, fresh_url: str) -> None:
    created = run(
        tmp_path,
        fresh_url,
        "users",
        "create-admin",
        "root_op",
        "--password-stdin",
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created admin root_op (")
    again = run(
        tmp_path,
        fresh_url,
        "users",
        "create-admin",
        "ROOT_op",
        "--password-stdin",
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert again.returncode == 1 and "already taken" in again.stderr
    assert len(again.stderr.splitlines()) == 1
    weak = run(
        tmp_path, fresh_url, "users", "create-admin", "weak_op", "--password-stdin", stdin="x\n"
    )
    assert weak.returncode == 1 and len(weak.stderr.splitlines()) == 1

    await _execute(
        fresh_url,
        "INSERT INTO users (id, username, username_key, password_hash, role, created_at, "
        "password_changed_at) VALUES ('01900000-0000-7000-8000-000000000001', 'plain', "
        "'plain', 'x', 'member', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00')",
    )
    granted = run(tmp_path, fresh_url, "users", "grant-admin", "Plain")
    assert granted.returncode == 0, granted.stderr
    assert "is now an admin (was member)" in granted.stdout
    twice = run(tmp_path, fresh_url, "users", "grant-admin", "plain")
    assert "already an admin" in twice.stdout
    missing = run(tmp_path, fresh_url, "users", "grant-admin", "nobody")
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: no user named 'nobody'"

    rotated = run(tmp_path, fresh_url, "keys", "rotate-jwt")
    assert rotated.returncode == 0, rotated.stderr

    exported = run(tmp_path, fresh_url, "audit", "export", "--since", "2000-01-01")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["event"] for r in lines] == [
        "admin.user_created",
        "admin.role_granted",
        "keys.jwt_rotated",
    ]
    assert [r["seq"] for r in lines] == [1, 2, 3]
    assert lines[1]["target_id"] == "01900000-0000-7000-8000-000000000001"
    assert lines[1]["details"] == {"via": "cli", "role": "admin", "previous": "member"}
    assert ADMIN_PASSWORD not in exported.stdout and PASSWORD not in exported.stdout
    future = run(tmp_path, fresh_url, "audit", "export", "--since", "2999-01-01T00:00:00Z")
    assert (future.returncode, future.stdout) == (0, "")
    bad = run(tmp_path, fresh_url, "audit", "export", "--since", "last tuesday")
    assert bad.returncode != 0 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "--since" in bad.stderr

    ok = run(tmp_path, fresh_url, "audit", "verify")
    assert (ok.returncode, ok.stdout) == (0, "OK: 3 audit records, chain intact\n")
    head = run(tmp_path, fresh_url, "audit", "head")
    assert head.stdout == f"3:{lines[2]['hash']}\n"
    after = run(tmp_path, fresh_url, "audit", "verify", "--after", f"1:{lines[0]['hash']}")
    assert (after.returncode, after.stdout) == (0, "OK: 2 audit records, chain intact\n")
    junk = run(tmp_path, fresh_url, "audit", "verify", "--after", "x:y")
    assert junk.returncode == 1 and len(junk.stderr.splitlines()) == 1
    await _execute(fresh_url, "UPDATE audit_log SET details = '{}' WHERE seq = 2")
    broken = run(tmp_path, fresh_url, "audit", "verify")
    assert broken.returncode == 1
    assert f"seq 2 (id {lines[1]['id']})" in broken.stderr
    assert "edited" in broken.stderr


async def test_grant_admin_says_why_running_nodes_keep_the_old_profile(
    tmp_path: Path, fresh_url: str
) -> None:
    # The role is granted (committed, audited); only the nodes' cached profile could not
    # be reached, which is a one-line note, not a failure, and no reconnect loop.
    await _execute(
        fresh_url,
        "INSERT INTO users (id, username, username_key, password_hash, role, created_at, "
        "password_changed_at) VALUES ('01900000-0000-7000-8000-000000000002', 'someone', "
        "'someone', 'x', 'member', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00')",
    )
    granted = ultrachat(
        tmp_path,
        "users",
        "grant-admin",
        "someone",
        database_url=fresh_url,
        redis_url="redis://127.0.0.1:1/0",  # nothing listens there
    )
    assert granted.returncode == 0, granted.stderr
    assert "someone (01900000-0000-7000-8000-000000000002) is now an admin" in granted.stdout
    assert granted.stderr == (
        "note: running servers may show the old role in /users/me for up to 3600 s:"
        " Redis is unreachable (ConnectionError)\n"
    )
