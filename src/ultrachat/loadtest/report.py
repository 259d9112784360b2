"""The end of a run: merge the workers' results, check every delivery, render the report.

The check: a message acked in channel C with seq S must reach every connection of every
member of C exactly once. Each connection reports, per channel, its head (the last seq it
has; it started at the channel's seq when sending began), the seqs it skipped and how many
frames came twice. Events reach a connection in seq order (the protocol's promise), so

    lost       = acked seqs after the head + acked seqs among the skipped

The two parts of ``lost`` are also reported apart: a skipped seq is *missing* (a later one
arrived, so the stream went past it), one after the head had *not arrived* when the run
stopped waiting (``drain_timeout``), which on an overloaded server is a delivery still
queued as much as one dropped. Both count as lost.
    duplicated = frames whose seq the connection already had
    delivered  = expected - lost

which needs a few integers per (connection, channel), not a set of every delivery.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from ultrachat.loadtest import kpi
from ultrachat.loadtest.histogram import Histogram
from ultrachat.loadtest.scenario import Scenario

MAX_EXAMPLES = 10

# (channels of the connection's user, heads, skipped seqs by slot, duplicates)
ConnState = tuple[list[int], list[int], dict[int, list[int]], int]


@dataclass
class Deliveries:
    expected: int = 0
    lost: int = 0
    missing: int = 0  # skipped: a later seq arrived instead
    not_arrived: int = 0  # after the connection's head when the run stopped waiting
    duplicated: int = 0
    acked_seq_collisions: int = 0  # two messages acked with one (channel, seq): a server bug
    acked_before_run: int = 0  # an ack at or below the channel's seq when sending began
    lost_examples: list[dict[str, int]] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return self.expected - self.lost


def check_deliveries(
    acked: dict[int, list[int]], conns: Iterable[ConnState], baseline: Sequence[int] = ()
) -> Deliveries:
    """Lost and duplicated deliveries, from the acks and every connection's state.

    ``baseline`` is each channel's seq when sending began: every ack of the run must be
    above it (an ack at or below it is an old message's, e.g. a reused ``client_msg_id``)."""
    out = Deliveries()
    ordered: dict[int, list[int]] = {}
    as_sets: dict[int, set[int]] = {}
    for chan, seqs in acked.items():
        if chan < len(baseline):
            out.acked_before_run += sum(1 for seq in seqs if seq <= baseline[chan])
        unique = set(seqs)
        out.acked_seq_collisions += len(seqs) - len(unique)
        ordered[chan] = sorted(unique)
        as_sets[chan] = unique
    for number, (channels, heads, skipped, duplicates) in enumerate(conns):
        out.duplicated += duplicates
        for slot, chan in enumerate(channels):
            seqs = ordered.get(chan, [])
            if not seqs:
                continue
            out.expected += len(seqs)
            after = seqs[bisect_right(seqs, heads[slot]) :]
            holes = [s for s in skipped.get(slot, ()) if s in as_sets[chan]]
            out.lost += len(after) + len(holes)
            out.missing += len(holes)
            out.not_arrived += len(after)
            for seq in (holes + after)[: MAX_EXAMPLES - len(out.lost_examples)]:
                out.lost_examples.append({"connection": number, "channel": chan, "seq": seq})
    return out


def merge_histograms(results: list[dict[str, Any]], name: str) -> Histogram:
    total = Histogram()
    for result in results:
        wire = result["hist"].get(name)
        if wire is not None:
            total.merge(Histogram.from_wire(wire))
    return total


def _sum(results: list[dict[str, Any]], name: str) -> int:
    return sum(int(r[name]) for r in results)


def _counter(results: list[dict[str, Any]], name: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for r in results:
        total.update(r[name])
    return dict(total.most_common())


def build(
    scenario: Scenario,
    *,
    urls: list[str],
    user_channels: dict[int, list[int]],
    results: list[dict[str, Any]],
    timing: dict[str, float],
    server: dict[str, Any] | None,
    faults: list[dict[str, Any]],
    reused_state: bool,
    baseline: Sequence[int] = (),
) -> dict[str, Any]:
    acked: dict[int, list[int]] = {}
    for r in results:
        for chan, seqs in r["acks"].items():
            acked.setdefault(chan, []).extend(seqs)
    conns = [
        (user_channels[user], heads, skipped, dups)
        for r in results
        for user, heads, skipped, dups in r["conns"]
    ]
    deliveries = check_deliveries(acked, conns, baseline)
    sending = max(timing["send_end"] - timing["t0"], 1e-9)

    made, failed = _sum(results, "connect_ok"), _sum(results, "connect_failed")
    sent, acked_count = _sum(results, "sent"), _sum(results, "acked")
    send_errors = _counter(results, "send_errors")
    rest_ok = _counter(results, "rest_ok")
    rest_errors = _counter(results, "rest_errors")
    rest_skipped = _sum(results, "rest_skipped")
    unacked = _sum(results, "unacked")
    retried = _sum(results, "retried")
    # Every refusal is an error, also one whose retry then went through; every attempt
    # (a first send or a retry) is an operation.
    error_total = (
        failed + sum(send_errors.values()) + unacked + sum(rest_errors.values()) + rest_skipped
    )
    operations = (
        made
        + failed
        + sent
        + retried
        + sum(rest_ok.values())
        + sum(rest_errors.values())
        + rest_skipped
    )

    latency: dict[str, Any] = {
        "end_to_end": merge_histograms(results, "e2e").summary(),
        "ack": merge_histograms(results, "ack").summary(),
        "connect": merge_histograms(results, "connect").summary(),
    }
    rest_all = Histogram()
    rest_routes: dict[str, Any] = {}
    for route in scenario.rest_mix:
        h = merge_histograms(results, f"rest:{route}")
        rest_all.merge(h)
        rest_routes[route] = {
            **h.summary(),
            "ok": rest_ok.get(route, 0),
            "errors": sum(n for k, n in rest_errors.items() if k.split()[0] == route),
            "per_second": round(rest_ok.get(route, 0) / sending, 1),
        }
    latency["rest_all"] = rest_all.summary()
    reconnect = merge_histograms(results, "reconnect")

    report: dict[str, Any] = {
        "scenario": scenario.summary(),
        "urls": urls,
        "state_reused": reused_state,
        "timing": {k: round(v, 3) for k, v in timing.items()},
        "connections": {
            "target": scenario.connections,
            "made": made,
            "failed": failed,
            "failure_reasons": _counter(results, "connect_failures"),
            "users": _sum(results, "users"),
            "reconnects": _sum(results, "reconnects"),
            "resent_after_reconnect": _sum(results, "resent"),
            "reconnect_attempts_failed": _sum(results, "reconnect_attempts_failed"),
            "closes_by_code": _counter(results, "close_codes"),
        },
        "messages": {
            "sent": sent,
            "acked": acked_count,
            "unacked": unacked,
            "refused": send_errors,
            "retried": retried,
            "sent_per_second": round(sent / sending, 1),
            "acked_per_second": round(acked_count / sending, 1),
            "delivered_per_second": round(deliveries.delivered / sending, 1),
        },
        "deliveries": {
            "expected": deliveries.expected,
            "delivered": deliveries.delivered,
            "lost": deliveries.lost,
            "lost_missing": deliveries.missing,
            "lost_not_arrived": deliveries.not_arrived,
            "duplicated": deliveries.duplicated,
            "reordered": _sum(results, "reorders"),
            "resets": _sum(results, "resets"),
            "acked_seq_collisions": deliveries.acked_seq_collisions,
            "acked_before_run": deliveries.acked_before_run,
            "lost_examples": deliveries.lost_examples,
        },
        "latency_ms": latency,
        "rest": rest_routes,
        "errors": {
            "total": error_total,
            "operations": operations,
            "rate": error_total / operations if operations else 0.0,
            "rest": rest_errors,
            "rest_skipped_client_saturated": rest_skipped,
            "frames": _counter(results, "other_errors"),
        },
        "server": server,
        "client": {
            "processes": len(results),
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in results), 2),
            "cores": round(sum(r["cpu_seconds"] for r in results) / sending, 2),
            "busiest_process_cores": round(
                max((r["cpu_seconds"] for r in results), default=0.0) / sending, 2
            ),
        },
        "fault": {
            "events": faults,
            "reconnect_ms": reconnect.summary(),
        }
        if faults
        else None,
    }
    report["kpi"] = kpi.evaluate(report)
    report["ok"] = (
        deliveries.lost == 0
        and deliveries.duplicated == 0
        and deliveries.acked_seq_collisions == 0
        and deliveries.acked_before_run == 0
        and failed == 0
        and unacked == 0
    )
    return report


# Rendering


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _refusals(by_code: dict[str, int]) -> str:
    total = sum(by_code.values())
    if not total:
        return "0"
    return f"{total:,} (" + ", ".join(f"{code} {n:,}" for code, n in sorted(by_code.items())) + ")"


def _latency_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    names = {"end_to_end": "end to end", "ack": "ack (send → commit)", "connect": "connect"}
    for key, label in names.items():
        s = report["latency_ms"][key]
        rows.append(
            [label, _fmt(s["count"]), *(_fmt(s[f"{p}_ms"]) for p in ("p50", "p95", "p99", "max"))]
        )
    for route, s in report["rest"].items():
        rows.append(
            [
                f"REST {route}",
                _fmt(s["count"]),
                *(_fmt(s[f"{p}_ms"]) for p in ("p50", "p95", "p99", "max")),
            ]
        )
    if report["fault"]:
        s = report["fault"]["reconnect_ms"]
        rows.append(
            [
                "reconnect (fault)",
                _fmt(s["count"]),
                *(_fmt(s[f"{p}_ms"]) for p in ("p50", "p95", "p99", "max")),
            ]
        )
    return rows


def _sections(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    c, m, d = report["connections"], report["messages"], report["deliveries"]
    sections = [
        (
            "Connections",
            ["made", "failed", "users", "reconnects", "target"],
            [
                [
                    _fmt(c["made"]),
                    _fmt(c["failed"]),
                    _fmt(c["users"]),
                    _fmt(c["reconnects"]),
                    _fmt(c["target"]),
                ]
            ],
        ),
        (
            "Messages",
            ["sent", "acked", "unacked", "refusals", "retried", "acked/s", "delivered/s"],
            [
                [
                    _fmt(m["sent"]),
                    _fmt(m["acked"]),
                    _fmt(m["unacked"]),
                    _refusals(m["refused"]),
                    _fmt(m["retried"]),
                    _fmt(m["acked_per_second"]),
                    _fmt(m["delivered_per_second"]),
                ]
            ],
        ),
        (
            "Deliveries",
            ["expected", "delivered", "lost (missing / not arrived)", "duplicated", "resets"],
            [
                [
                    _fmt(d["expected"]),
                    _fmt(d["delivered"]),
                    _lost(d),
                    _fmt(d["duplicated"]),
                    _fmt(d["resets"]),
                ]
            ],
        ),
        ("Latency (ms)", ["", "count", "p50", "p95", "p99", "max"], _latency_rows(report)),
    ]
    server = report.get("server")
    if server:
        rows = [
            [
                urlsplit(url).netloc,
                _fmt(n["cpu_seconds"]),
                _fmt(n["cpu_cores"]),
                _fmt(n["rss_peak_mb"]),
                _fmt(n["processes"]),
                "",
            ]
            for url, n in server["nodes"].items()
        ]
        hit = server["cache"]["hit_rate"]
        rows.append(
            [
                "all nodes",
                _fmt(server["cpu_seconds"]),
                _fmt(server["cpu_cores"]),
                _fmt(server["rss_peak_mb"]),
                _fmt(sum(n["processes"] for n in server["nodes"].values())),
                f"{hit:.1%} of {server['cache']['lookups']:,}" if hit is not None else "-",
            ]
        )
        client = report["client"]
        rows.append(
            [
                f"load generator (busiest process {client['busiest_process_cores']:.2f} cores)",
                _fmt(client["cpu_seconds"]),
                _fmt(client["cores"]),
                "-",
                _fmt(client["processes"]),
                "-",
            ]
        )
        sections.append(
            (
                "CPU and memory (server from /metrics; sending phase)",
                ["node", "CPU s", "cores", "RSS peak MB", "processes", "cache hit"],
                rows,
            )
        )
    if report["fault"]:
        back = report["fault"]["reconnect_ms"]
        rows = [
            [
                str(e["node"]),
                str(e["pid"]),
                _fmt(e["killed_at"]),
                _fmt(e.get("restarted_in")),
                _fmt(c["reconnects"]),
                _fmt(c["resent_after_reconnect"]),
                _fmt(back["p99_ms"]),
                _fmt(back["max_ms"]),
            ]
            for e in report["fault"]["events"]
        ]
        sections.append(
            (
                "Fault",
                [
                    "node",
                    "pid",
                    "killed at s",
                    "restarted in s",
                    "reconnects",
                    "sends resent",
                    "reconnect p99 ms",
                    "all back ms",
                ],
                rows,
            )
        )
    sections.append(
        (
            "KPI (scaling plan)",
            ["KPI", "target", "measured", "result"],
            [[k["kpi"], k["target"], k["measured"], k["status"]] for k in report["kpi"]],
        )
    )
    return sections


def render_terminal(report: dict[str, Any], console: Console) -> None:
    for title, header, rows in _sections(report):
        table = Table(title=title, title_justify="left")
        for name in header:
            table.add_column(name, justify="left" if name in ("", "node", "KPI") else "right")
        for row in rows:
            style = None
            if title.startswith("KPI"):
                style = {"pass": "green", "fail": "red"}.get(row[-1])
            table.add_row(*row, style=style)
        console.print(table)
    verdict = "OK: 0 lost, 0 duplicated" if report["ok"] else "NOT OK: see the tables above"
    console.print(f"[bold]{verdict}[/bold]")


def render_markdown(report: dict[str, Any]) -> str:
    s = report["scenario"]
    lines = [
        "# UltraChat load test",
        "",
        f"{s['users']:,} users x {s['connections_per_user']} connections, {s['channels']:,} "
        f"channels of {s['members']} members, {s['rate']:g} msgs/s ({s['shape']}) for "
        f"{s['duration']:g} s, REST {s['rest_mix'] or 'none'}, {s['processes']} processes, "
        f"against {', '.join(report['urls'])}.",
        "",
    ]
    for title, header, rows in _sections(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
        ]
        lines.append("")
    lines.append("**Result:** " + ("0 lost, 0 duplicated." if report["ok"] else "NOT OK."))
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], json_path: str | None, md_path: str | None) -> None:
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if md_path:
        Path(md_path).write_text(render_markdown(report))


def _lost(d: dict[str, Any]) -> str:
    if not d["lost"]:
        return "0"
    # Reports written before the split have only the total.
    if "lost_missing" not in d:
        return _fmt(d["lost"])
    return f"{_fmt(d['lost'])} ({_fmt(d['lost_missing'])} / {_fmt(d['lost_not_arrived'])})"
