"""Fixtures for the dashboard's browser test: Debian's chromium, installed when missing.

We drive Debian's own ``chromium`` package with Playwright (never ``playwright install``,
which downloads a browser build of its own). When ``/usr/bin/chromium`` is missing, the
session installs it with apt, as root; CI fails with a clear message if that cannot be done,
other runs skip visibly. What happened (and how long the install took) is printed in the
terminal summary, with the screenshot's path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.backends import IN_CI, provision
from tests.support.server import Node, cluster

CHROMIUM = Path("/usr/bin/chromium")
# The live feed's interval on the test node: quick enough to watch the charts move.
LIVE_INTERVAL_SECONDS = 0.5
APT_TIMEOUT_SECONDS = 600  # update and install together; the tests allow 900 s
# Lines for the terminal summary: how the browser was found or installed, where the
# screenshot went.
NOTES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if NOTES:
        terminalreporter.section("dashboard")
        for line in NOTES:
            terminalreporter.write_line(line)


def _unavailable(reason: str) -> None:
    """Fail in CI, skip (visibly) elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true requires Debian's chromium for the dashboard test: {reason}")
    pytest.skip(f"no browser (set CI=true to make this fatal): {reason}")


def _apt(*args: str, deadline: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=max(1.0, deadline - time.monotonic()),
        check=False,
    )


def _install_chromium() -> float:
    """``apt-get install chromium``; returns the seconds it took. Updates the lists if needed."""
    if os.geteuid() != 0:
        _unavailable(f"{CHROMIUM} is missing and installing it needs root")
    if shutil.which("apt-get") is None:
        _unavailable(f"{CHROMIUM} is missing and there is no apt-get to install it")
    started = time.monotonic()
    deadline = started + APT_TIMEOUT_SECONDS
    install = ("install", "-y", "-q", "--no-install-recommends", "chromium")
    try:
        result = _apt(*install, deadline=deadline)
        if result.returncode != 0:
            # Stale or empty package lists: refresh them once and try again.
            _apt("update", "-q", deadline=deadline)
            result = _apt(*install, deadline=deadline)
    except subprocess.TimeoutExpired:
        _unavailable(f"apt-get install chromium took over {APT_TIMEOUT_SECONDS} s")
        raise
    if result.returncode != 0 or not CHROMIUM.exists():
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        _unavailable("apt-get install chromium failed:\n" + "\n".join(tail))
    return time.monotonic() - started


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The path of Debian's chromium, installing the package first when it is missing."""
    if CHROMIUM.exists():
        NOTES.append(f"browser: {CHROMIUM} (already installed)")
    else:
        seconds = _install_chromium()
        NOTES.append(f"browser: installed {CHROMIUM} with apt-get in {seconds:.1f} s")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
async def dashboard_node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    """One real server process (SQLite) whose live feed ticks every half second."""
    tmp = tmp_path_factory.mktemp("dashboard")
    async with (
        provision("sqlite", tmp) as backend,
        cluster(backend, tmp, 1, metrics_live_interval_seconds=LIVE_INTERVAL_SECONDS) as nodes,
    ):
        yield nodes[0]


def create_admin(node: Node, username: str, password: str) -> None:
    """``ultrachat users create-admin`` against the node's database, as an operator would."""
    result = subprocess.run(
        [sys.executable, "-m", "ultrachat", "users", "create-admin", username, "--password-stdin"],
        env=node.env,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
