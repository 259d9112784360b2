"""Bodies of the monitoring API: the SLO report and the live feed's events.

The live event's keys are a contract with the operator dashboard (docs/monitoring.md): add
fields if needed, never rename or remove one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ultrachat.monitoring.slo import SloReport

SloStatus = Literal["pass", "fail", "no data"]


class SloLineOut(BaseModel):
    name: str = Field(description="api_latency_p99, error_rate, cache_hit_rate or uptime.")
    value: float | None = Field(description="The figure in `unit`; null when there is no data.")
    unit: str = Field(description="ms or %.")
    target: str = Field(description="The plan's KPI, e.g. '< 100 ms'.")
    status: SloStatus


class SloReportOut(BaseModel):
    since: datetime
    until: datetime
    passed: bool = Field(description="Every line passes ('no data' does not).")
    lines: list[SloLineOut]
    snapshots: int = Field(description="Metrics snapshots in the window, all nodes.")
    nodes: int
    requests: int = Field(description="API requests in the window.")
    errors: int = Field(description="Of which answered with a 5xx status.")
    cache_lookups: int
    cache_hits: int


def report_out(report: SloReport) -> SloReportOut:
    return SloReportOut(
        since=report.since,
        until=report.until,
        passed=report.passed,
        lines=[
            SloLineOut(
                name=line.name,
                value=line.value,
                unit=line.unit,
                target=line.target,
                status=line.status,
            )
            for line in report.lines
        ],
        snapshots=report.snapshots,
        nodes=report.nodes,
        requests=report.requests,
        errors=report.errors,
        cache_lookups=report.cache_lookups,
        cache_hits=report.cache_hits,
    )


class LatencyMs(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class CpuPercent(BaseModel):
    process: float = Field(description="Percent of one core (can exceed 100).")
    host: float = Field(description="Percent of all the host's cores.")


class MemoryBytes(BaseModel):
    process: int
    host_used: int
    host_total: int


class LiveSloLine(BaseModel):
    name: str
    value: float | None = Field(description="In the target's unit (ms or %); null: no data.")
    target: str
    status: SloStatus


class LiveFrame(BaseModel):
    """One event of ``/api/v1/admin/live``: this node, since the stream's previous event."""

    at: datetime
    connections: int = Field(description="Open WebSocket connections on this node.")
    active_users: int = Field(description="Across all nodes, last 5 minutes.")
    requests_per_s: float
    error_rate: float = Field(description="5xx / API responses, a ratio 0..1 (0: no requests).")
    messages_per_s: float
    deliveries_per_s: float
    latency_ms: LatencyMs
    cache_hit_rate: float | None = Field(description="A ratio 0..1; null: no lookups.")
    cpu_percent: CpuPercent
    memory_bytes: MemoryBytes
    slo: list[LiveSloLine] = Field(description="The SLO report over the last hour.")
