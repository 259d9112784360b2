"""``ultrachat loadtest`` against live nodes: a small run, and fault mode's short form.

Small functional runs (a few hundred connections, a few seconds): they check the tool and
the delivery promise end to end, not performance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.backends import provision
from tests.support.server import cluster, node_env
from ultrachat.loadtest.coordinator import run
from ultrachat.loadtest.scenario import build


def assert_clean(report: dict[str, Any]) -> None:
    connections, messages, deliveries = (
        report["connections"],
        report["messages"],
        report["deliveries"],
    )
    assert connections["failed"] == 0, connections["failure_reasons"]
    assert connections["made"] == connections["target"]
    assert messages["sent"] > 0
    assert messages["acked"] == messages["sent"], messages
    assert messages["unacked"] == 0 and not messages["refused"]
    assert deliveries["lost"] == 0, deliveries["lost_examples"]
    assert deliveries["duplicated"] == 0
    assert deliveries["acked_seq_collisions"] == 0
    assert deliveries["acked_before_run"] == 0
    assert deliveries["expected"] > messages["acked"]  # fan-out: several receivers each
    assert deliveries["delivered"] == deliveries["expected"]
    assert report["latency_ms"]["end_to_end"]["count"] == deliveries["delivered"]
    assert report["ok"]


async def test_a_small_run_delivers_everything_once(tmp_path: Path) -> None:
    async with provision("sqlite", tmp_path) as backend, cluster(backend, tmp_path) as (node,):
        values = {
            "urls": node.http,
            "users": "100",
            "connections_per_user": "2",
            "channels": "20",
            "members": "2:20",
            "rate": "50",
            "duration": "4",
            "rest_mix": "history=5,channels=2,me=2",
            "processes": "2",
            "source_addresses": "127.0.0.1-127.0.0.2",
            "state": str(tmp_path / "state.json"),
            "report_json": str(tmp_path / "report.json"),
            "report_md": str(tmp_path / "report.md"),
        }
        report = await run(build(values))
        assert_clean(report)
        assert report["connections"]["made"] == 200
        assert not report["state_reused"]
        for route in ("history", "channels", "me"):
            assert report["rest"][route]["ok"] > 0 and report["rest"][route]["errors"] == 0
        assert report["server"]["cpu_seconds"] > 0
        assert report["server"]["cache"]["lookups"] > 0
        written = json.loads((tmp_path / "report.json").read_text())
        assert written["deliveries"] == report["deliveries"]
        assert {line["kpi"] for line in written["kpi"]} >= {
            "API response time",
            "Error rate",
            "Cache hit rate",
            "Real-time connections",
            "Message processing",
            "Lost deliveries",
            "Duplicated deliveries",
        }
        markdown = (tmp_path / "report.md").read_text()
        assert "## KPI (scaling plan)" in markdown and "| Lost deliveries | 0 |" in markdown

        # A second run reuses the users, tokens and channels of the first.
        again = await run(build({**values, "duration": "1", "rest_mix": "", "report_md": ""}))
        assert again["state_reused"]
        assert_clean(again)


async def test_fault_mode_kill_a_node_and_resume_elsewhere(tmp_path: Path) -> None:
    async with provision("postgres", tmp_path) as backend:
        scenario = build(
            {
                "spawn_nodes": "2",
                "users": "60",
                "connections_per_user": "2",
                "channels": "10",
                "members": "2:20",
                "rate": "40",
                "duration": "5",
                "processes": "2",
                "faults": "kill:0@1.5",
                "fault_restart_after": "1",
                "report_md": str(tmp_path / "fault.md"),
            }
        )
        report = await run(scenario, node_env=node_env(backend, tmp_path), log_dir=tmp_path)
    assert_clean(report)
    fault = report["fault"]
    (event,) = fault["events"]
    assert event["node"] == 0 and event["restarted_in"] > 0
    # Node 0 held half of the 120 connections; every one moved to node 1 and resumed.
    assert report["connections"]["reconnects"] >= 60
    assert fault["reconnect_ms"]["count"] == report["connections"]["reconnects"]
    assert fault["reconnect_ms"]["max_ms"] is not None
    assert "## Fault" in (tmp_path / "fault.md").read_text()
