"""A private PostgreSQL primary with a streaming replica, for tests of read replicas.

The system PostgreSQL (the run's backend) does not accept replication connections, and its
configuration is not ours to change, so this module starts its own pair from the PostgreSQL
binaries: ``initdb`` a primary into a temporary directory (``wal_level=replica``, replication
allowed from 127.0.0.1), ``pg_basebackup -R`` a copy of it, and run that copy as a hot standby.
Both listen on free loopback ports only, with their sockets in the temporary directory.

PostgreSQL refuses to run as root; when the tests do, every server binary runs as the
``postgres`` OS user (``runuser``) and the temporary directory is handed to that user.
Servers are stopped by their data directories (``pg_ctl stop -m fast``), however the test ends.

Mandatory when CI=true (a missing binary or user fails the run); elsewhere the tests skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.backends import unavailable
from tests.support.server import free_port

PG_BIN = Path(os.environ.get("ULTRACHAT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # the OS user the servers run as when the tests run as root
START_TIMEOUT = 30


@dataclass
class PgServer:
    """One postmaster we started: its data directory, loopback port and log."""

    name: str
    data_dir: Path
    port: int
    socket_dir: Path
    run_as: tuple[str, ...]

    @property
    def url(self) -> str:
        """SQLAlchemy URL, as ``ULTRACHAT_DATABASE_URL`` takes it."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.socket_dir / f"{self.name}.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    async def start(self) -> None:
        await _run(
            *self.run_as,
            str(PG_BIN / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(START_TIMEOUT),
            context=self,
        )

    async def stop(self) -> None:
        """Fast shutdown; a no-op when it is not running."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            await _run(
                *self.run_as,
                str(PG_BIN / "pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(START_TIMEOUT),
                context=self,
            )
        except RuntimeError:
            # pg_ctl failed: end the postmaster we started, by the PID in its own data dir.
            pid = _postmaster_pid(self.data_dir)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)

    async def connect(self) -> Any:
        return await asyncpg.connect(self.dsn, timeout=5)

    async def fetchval(self, query: str, *args: Any) -> Any:
        conn = await self.connect()
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def execute(self, query: str) -> None:
        conn = await self.connect()
        try:
            await conn.execute(query)
        finally:
            await conn.close()


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first)
    except (OSError, ValueError):
        return None


async def _run(*args: str, context: PgServer | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    if process.returncode != 0:
        log = f"\n--- {context.name} log ---\n{context.log()}" if context else ""
        raise RuntimeError(f"{' '.join(args)} exited {process.returncode}:\n{text}{log}")
    return text


def _requirements() -> tuple[tuple[str, ...], pwd.struct_passwd | None]:
    """How to run the server binaries here; ``unavailable`` (fail in CI, else skip) if we can't."""
    for binary in ("initdb", "pg_ctl", "pg_basebackup", "postgres"):
        if not (PG_BIN / binary).exists():
            unavailable(f"PostgreSQL binary {PG_BIN / binary} (set ULTRACHAT_TEST_PG_BIN)")
    if os.geteuid() != 0:
        return (), None
    try:
        user = pwd.getpwnam(PG_USER)
    except KeyError:
        unavailable(f"running as root needs the OS user {PG_USER!r} to run PostgreSQL")
        raise
    runuser = shutil.which("runuser")
    if runuser is None:
        unavailable("running as root needs runuser to start PostgreSQL as postgres")
        raise AssertionError("unreachable")
    return (runuser, "-u", PG_USER, "--"), user


def _append_conf(data_dir: Path, settings: dict[str, str]) -> None:
    lines = "".join(f"{key} = '{value}'\n" for key, value in settings.items())
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\n# tests/support/pg_cluster.py\n" + lines)


async def wait_streaming(primary: PgServer, replica: PgServer, timeout: float = 20.0) -> None:
    """Until the replica accepts reads and has replayed everything the primary has written."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    target = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
    while True:
        try:
            caught_up = await replica.fetchval(
                "SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                target,
            )
            if caught_up:
                return
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError):
            pass  # still starting
        if loop.time() > deadline:
            raise RuntimeError(f"the replica did not catch up:\n{replica.log()}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def streaming_pair() -> AsyncIterator[tuple[PgServer, PgServer]]:
    """(primary, replica): a fresh primary and a hot standby streaming from it."""
    run_as, user = _requirements()
    root = Path(tempfile.mkdtemp(prefix="uc-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    primary = PgServer("primary", root / "primary", free_port(), root, run_as)
    replica = PgServer("replica", root / "replica", free_port(), root, run_as)
    try:
        await _run(
            *run_as,
            str(PG_BIN / "initdb"),
            "-D",
            str(primary.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        (primary.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n"
        )
        _append_conf(
            primary.data_dir,
            {
                "listen_addresses": "127.0.0.1",
                "port": str(primary.port),
                "unix_socket_directories": str(root),
                "wal_level": "replica",
                "max_wal_senders": "4",
                "wal_keep_size": "256MB",
                "max_connections": "100",
                "shared_buffers": "32MB",
                "fsync": "off",  # a throwaway cluster: durability buys nothing here
                "full_page_writes": "off",
            },
        )
        await primary.start()
        await _run(
            *run_as,
            str(PG_BIN / "pg_basebackup"),
            "-D",
            str(replica.data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
            context=primary,
        )
        _append_conf(
            replica.data_dir,
            {"port": str(replica.port), "hot_standby": "on", "wal_receiver_status_interval": "1s"},
        )
        await replica.start()
        await wait_streaming(primary, replica)
        yield primary, replica
    finally:
        for server in (replica, primary):
            with contextlib.suppress(Exception):
                await server.stop()
        shutil.rmtree(root, ignore_errors=True)
