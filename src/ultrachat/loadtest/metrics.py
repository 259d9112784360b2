"""The server's side of a run, from each node's ``/metrics`` (Prometheus text format).

Scraped every two seconds during the run. CPU and cache hit rate are the change of their
counters over the sending phase; a node restarted mid-run (fault mode) starts new counters,
so each process (told apart by ``process_start_time_seconds``) is counted on its own and the
changes are added up. What a killed process did after its last scrape is not counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

SIMPLE = {
    "process_cpu_seconds_total": "cpu",
    "process_resident_memory_bytes": "rss",
    "process_start_time_seconds": "started",
    "ultrachat_ws_connections": "ws",
    "ultrachat_ws_deliveries_total": "deliveries",
}
CACHE = "ultrachat_cache_requests_total{"


@dataclass
class Sample:
    at: float  # wall clock
    values: dict[str, float] = field(default_factory=dict)
    cache: dict[tuple[str, str], float] = field(default_factory=dict)  # (resource, result)


def _labels(text: str) -> dict[str, str]:
    out = {}
    for part in text.split('",'):
        name, _, value = part.partition('="')
        out[name.strip()] = value.rstrip('"')
    return out


def parse(text: str, at: float) -> Sample:
    """The few series the report needs, without a full exposition-format parser."""
    sample = Sample(at)
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, rest = line.partition(" ")
        if name in SIMPLE:
            sample.values[SIMPLE[name]] = float(rest.split()[0])
        elif line.startswith(CACHE):
            labels, _, value = line[len(CACHE) :].partition("} ")
            parsed = _labels(labels)
            key = (parsed.get("resource", ""), parsed.get("result", ""))
            sample.cache[key] = float(value.split()[0])
    return sample


class MetricsWatch:
    """Samples per node URL; deltas over a window, per process."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.samples: dict[str, list[Sample]] = defaultdict(list)
        self.failures = 0

    async def scrape(self, http: httpx.AsyncClient) -> None:
        async def one(url: str) -> None:
            try:
                response = await http.get(url + "/metrics", timeout=5.0)
                response.raise_for_status()
            except httpx.HTTPError:
                self.failures += 1
                return
            self.samples[url].append(parse(response.text, time.time()))

        await asyncio.gather(*(one(url) for url in self.urls))

    def latest(self) -> dict[str, float]:
        """Server CPU (cores, over the last two samples of each node) and open sockets now."""
        cores = ws = 0.0
        for samples in self.samples.values():
            if not samples:
                continue
            ws += samples[-1].values.get("ws", 0.0)
            if len(samples) >= 2:
                a, b = samples[-2], samples[-1]
                if a.values.get("started") == b.values.get("started") and b.at > a.at:
                    cores += (b.values.get("cpu", 0.0) - a.values.get("cpu", 0.0)) / (b.at - a.at)
        return {"cores": cores, "ws": ws}

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Per node and in total: CPU seconds and cores, RSS, restarts, cache hit rate."""
        nodes: dict[str, Any] = {}
        cpu_total = 0.0
        cache: dict[tuple[str, str], float] = defaultdict(float)
        for url in self.urls:
            samples = self.samples.get(url, [])
            in_window = [s for s in samples if start <= s.at <= end]
            processes: dict[float, list[Sample]] = defaultdict(list)
            for s in in_window:
                processes[s.values.get("started", 0.0)].append(s)
            cpu = 0.0
            node_cache: dict[tuple[str, str], float] = defaultdict(float)
            for run in processes.values():
                first, last = run[0], run[-1]
                cpu += last.values.get("cpu", 0.0) - first.values.get("cpu", 0.0)
                for key, value in last.cache.items():
                    node_cache[key] += value - first.cache.get(key, 0.0)
            rss = [s.values["rss"] for s in samples if "rss" in s.values]
            span = (in_window[-1].at - in_window[0].at) if len(in_window) > 1 else 0.0
            nodes[url] = {
                "cpu_seconds": round(cpu, 2),
                "cpu_cores": round(cpu / span, 2) if span else None,
                "rss_peak_mb": round(max(rss) / 2**20, 1) if rss else None,
                "rss_last_mb": round(rss[-1] / 2**20, 1) if rss else None,
                "processes": len(processes),
                "samples": len(in_window),
            }
            cpu_total += cpu
            for key, value in node_cache.items():
                cache[key] += value
        return {
            "nodes": nodes,
            "cpu_seconds": round(cpu_total, 2),
            "cpu_cores": round(sum(n["cpu_cores"] or 0 for n in nodes.values()), 2),
            "rss_peak_mb": round(sum(n["rss_peak_mb"] or 0 for n in nodes.values()), 1) or None,
            "cache": cache_rates(cache),
            "scrape_failures": self.failures,
        }


def cache_rates(cache: dict[tuple[str, str], float]) -> dict[str, Any]:
    """Hits / (hits + misses), overall and per resource (None when nothing was looked up)."""
    per: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (resource, result), value in cache.items():
        per[resource][0 if result == "hit" else 1] += value
    hits = sum(h for h, _ in per.values())
    lookups = hits + sum(m for _, m in per.values())
    return {
        "hit_rate": round(hits / lookups, 4) if lookups else None,
        "lookups": int(lookups),
        "by_resource": {
            resource: round(h / (h + m), 4) for resource, (h, m) in sorted(per.items()) if h + m
        },
    }
