"""Run the ``ultrachat`` command as an operator would: in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.app import TEST_MASTER_KEY


def ultrachat(
    tmp_path: Path, *args: str, stdin: str | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``python -m ultrachat ARGS`` in ``tmp_path``, with only the ULTRACHAT_* given here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRACHAT_")}
    env["ULTRACHAT_DATA_DIR"] = str(tmp_path / "var")
    if settings.get("database_url", "").startswith("postgresql"):
        # PostgreSQL deployments must name their master key; SQLite ones generate a key file.
        settings = {"master_key": TEST_MASTER_KEY, **settings}
    env.update({f"ULTRACHAT_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "ultrachat", *args],
        cwd=tmp_path,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
