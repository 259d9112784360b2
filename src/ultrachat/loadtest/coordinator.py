"""The coordinator: setup, worker processes, the phases of a run, faults, the report.

Phases (each worker is told when to move on over its own queue; all report on one queue):

1. setup: users, channels and tokens (``setup``), or the state file's;
2. connect: every worker opens its connections (``connect_concurrency`` at a time) and says
   how many it holds; nothing is sent until all have answered;
3. send: the coordinator reads every channel's seq (the baseline), then starts everyone at
   the same wall-clock instant ``t0``; workers send on schedule and run the REST mix for
   ``duration`` seconds, reporting once a second; faults fire at ``t0 + at``;
4. drain: workers wait for their acks and report each channel's highest acked seq; the
   coordinator hands everyone the merged targets, and workers wait until each connection
   has reached them (or, while their acks and frames keep arriving, up to
   ``MAX_DRAIN_SECONDS``; once nothing arrives for ``drain_timeout``, they stop waiting)
   before closing and sending their results.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from rich.console import Console

from ultrachat.loadtest import report as reporting
from ultrachat.loadtest import setup
from ultrachat.loadtest.display import Display
from ultrachat.loadtest.metrics import MetricsWatch
from ultrachat.loadtest.nodes import LocalNodes
from ultrachat.loadtest.scenario import Scenario
from ultrachat.loadtest.worker import MAX_DRAIN_SECONDS, ConnPlan, WorkerPlan
from ultrachat.loadtest.worker import main as worker_main

SCRAPE_EVERY = 2.0
START_DELAY = 0.5  # between telling the workers t0 and t0 itself


class RunError(RuntimeError):
    """The run could not go on; the message is one line for the operator."""


def ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, "/api/v1/ws", "", ""))


def user_channels(state: setup.RunState) -> dict[int, list[int]]:
    channels: dict[int, list[int]] = {i: [] for i in range(len(state.users))}
    for index, channel in enumerate(state.channels):
        for member in channel.members:
            channels[member].append(index)
    return channels


def plan_workers(
    scenario: Scenario, state: setup.RunState, urls: list[str], run_id: str
) -> list[WorkerPlan]:
    """Users split into contiguous slices (a user's connections stay in one process);
    connection g goes to node g mod len(urls); source addresses are dealt to processes."""
    chans = user_channels(state)
    count = scenario.worker_count
    users = len(state.users)
    addresses = list(scenario.source_addresses)
    with_channels = sum(scenario.connections_per_user for u in range(users) if chans[u])
    plans = []
    for w in range(count):
        mine = range(users * w // count, users * (w + 1) // count)
        if addresses:
            own = (
                addresses[w::count] if len(addresses) >= count else [addresses[w % len(addresses)]]
            )
        else:
            own = []
        connections: list[ConnPlan] = []
        for u in mine:
            for k in range(scenario.connections_per_user):
                g = u * scenario.connections_per_user + k
                source = own[len(connections) % len(own)] if own else None
                connections.append(ConnPlan(u, g % len(urls), source))
        sending = sum(scenario.connections_per_user for u in mine if chans[u])
        share = sending / with_channels if with_channels else 0.0
        used = sorted({c for u in mine for c in chans[u]})
        plans.append(
            WorkerPlan(
                index=w,
                ws_urls=[ws_url(u) for u in urls],
                http_urls=urls,
                tokens={u: state.users[u].access_token for u in mine},
                user_channels={u: chans[u] for u in mine},
                channel_ids={c: state.channels[c].id for c in used},
                connections=connections,
                rate=scenario.rate * share,
                rest_mix={r: rate * len(mine) / users for r, rate in scenario.rest_mix.items()},
                shape=scenario.shape,
                duration=scenario.duration,
                body_bytes=scenario.body_bytes,
                connect_concurrency=scenario.connect_concurrency,
                connect_timeout=scenario.connect_timeout,
                drain_timeout=scenario.drain_timeout,
                retry_refused=scenario.retry_refused,
                seed=scenario.seed,
                run_id=run_id,
                rest_source=own[0] if own else None,
            )
        )
    return plans


class Coordinator:
    def __init__(
        self,
        scenario: Scenario,
        console: Console,
        progress: bool,
        node_env: dict[str, str] | None,
        log_dir: Path | None,
    ) -> None:
        self.s = scenario
        self.console = console
        self.display = Display(console, progress, scenario.connections)
        self.node_env = node_env
        self.log_dir = log_dir
        self.nodes: LocalNodes | None = None
        self.processes: list[Any] = []
        self.controls: list[Any] = []
        self.out: Any = None
        self.results: dict[int, dict[str, Any]] = {}
        self.fault_events: list[dict[str, Any]] = []

    # Worker messages

    def _next(self) -> tuple[Any, ...] | None:
        try:
            message: tuple[Any, ...] = self.out.get_nowait()
        except queue.Empty:
            return None
        return message

    async def collect(self, kind: str, seconds: float) -> dict[int, Any]:
        """Wait until every worker has sent a ``kind`` message; the other kinds are handled
        on the way (stats feed the display, a failure ends the run)."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + seconds
        while len(got) < len(self.processes):
            message = self._next()
            if message is None:
                for index, process in enumerate(self.processes):
                    if index not in got and process.exitcode not in (None, 0):
                        raise RunError(f"worker {index} died with exit code {process.exitcode}")
                if time.monotonic() > deadline:
                    missing = sorted(set(range(len(self.processes))) - set(got))
                    raise RunError(f"workers {missing} did not report {kind!r} in {seconds:g} s")
                await asyncio.sleep(0.02)
                continue
            name, index = message[0], message[1]
            if name == "stats":
                self.display.worker_stats(index, message[2])
            elif name == "failed":
                last = message[2].strip().splitlines()[-1]
                raise RunError(f"worker {index} failed: {last}")
            elif name == kind:
                got[index] = message[2]
            elif name == "result":  # a worker told to stop early
                self.results[index] = message[2]
        return got

    def tell(self, *message: Any) -> None:
        for control in self.controls:
            control.put(message)

    # Faults and metrics

    async def fault(self, t0: float, index: int, at: float) -> None:
        assert self.nodes is not None
        await asyncio.sleep(max(0.0, t0 + at - time.time()))
        pid = self.nodes.kill(index)
        event: dict[str, Any] = {"node": index, "pid": pid, "killed_at": round(time.time() - t0, 2)}
        self.fault_events.append(event)
        self.display.set_phase("sending", f"killed node {index} (pid {pid})")
        await asyncio.sleep(self.s.fault_restart_after)
        event["restarted_in"] = round(await self.nodes.restart(index), 2)
        self.display.set_phase("sending", f"node {index} restarted")

    async def scrape_forever(self, watch: MetricsWatch, http: httpx.AsyncClient) -> None:
        while True:
            await watch.scrape(http)
            self.display.server = watch.latest()
            await asyncio.sleep(SCRAPE_EVERY)

    # The run

    async def run(self) -> dict[str, Any]:
        s = self.s
        timing: dict[str, float] = {}
        started = time.time()
        urls = list(s.urls)
        if s.spawn_nodes:
            log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix="ultrachat-loadtest-"))
            self.nodes = LocalNodes(s.spawn_nodes, dict(self.node_env or os.environ), log_dir)
            self.display.set_phase("nodes", f"starting {s.spawn_nodes} (logs in {log_dir})")
            await asyncio.to_thread(self.nodes.migrate)
            await self.nodes.start()
            urls = self.nodes.urls
        try:
            with self.display:
                return await self._run(urls, timing, started)
        finally:
            self.stop_workers()
            if self.nodes is not None:
                await asyncio.to_thread(self.nodes.stop)

    async def _run(
        self, urls: list[str], timing: dict[str, float], started: float
    ) -> dict[str, Any]:
        s = self.s
        state, reused = await setup.prepare(s, urls[0], self.display.setup_progress)
        timing["setup_seconds"] = time.time() - started

        plans = plan_workers(s, state, urls, secrets.token_hex(4))
        context = multiprocessing.get_context("spawn")
        self.out = context.Queue()
        self.display.set_phase("connecting")
        connect_started = time.time()
        for plan in plans:
            control = context.Queue()
            process = context.Process(
                target=worker_main,
                args=(plan, control, self.out),
                daemon=True,
                name=f"loadtest-worker-{plan.index}",
            )
            process.start()
            self.controls.append(control)
            self.processes.append(process)
        connect_budget = 60.0 + s.connect_timeout * (
            1 + s.connections / max(1, s.connect_concurrency)
        )
        await self.collect("connected", connect_budget)
        timing["connect_seconds"] = time.time() - connect_started

        heads = await setup.channel_heads(s, urls[0], state)
        watch = MetricsWatch(urls)
        async with httpx.AsyncClient(trust_env=False) as http:
            await watch.scrape(http)
            scraper = asyncio.create_task(self.scrape_forever(watch, http))
            t0 = time.time() + START_DELAY
            self.tell("start", t0, heads)
            self.display.sending(t0, s.duration)
            faults = [asyncio.create_task(self.fault(t0, f.node, f.at)) for f in s.faults]
            try:
                sent = await self.collect("sent", s.duration + MAX_DRAIN_SECONDS + 60.0)
                send_end = time.time()
                # The sending phase's last sample: before the drain and the goodbyes.
                scraper.cancel()
                await watch.scrape(http)
                await asyncio.gather(*faults)
                targets: dict[int, int] = {}
                for highest in sent.values():
                    for chan, seq in highest.items():
                        targets[chan] = max(targets.get(chan, 0), seq)
                self.display.set_phase("draining")
                self.tell("drain", targets)
                self.results.update(await self.collect("result", MAX_DRAIN_SECONDS + 60.0))
            finally:
                scraper.cancel()
                for task in faults:
                    task.cancel()
                await asyncio.gather(scraper, *faults, return_exceptions=True)
        timing.update(t0=t0, send_end=t0 + s.duration, end=time.time())
        timing["drain_seconds"] = timing["end"] - send_end
        self.display.set_phase("done")
        result = reporting.build(
            s,
            urls=urls,
            user_channels=user_channels(state),
            results=[self.results[i] for i in sorted(self.results)],
            timing=timing,
            server=watch.summary(t0 - START_DELAY - 1.0, send_end + 1.0),
            faults=self.fault_events,
            reused_state=reused,
            baseline=heads,
        )
        if self.nodes is not None:
            result["spawned_nodes"] = {"urls": urls, "log_dir": str(self.nodes.log_dir)}
        reporting.write(result, s.report_json, s.report_md)
        return result

    def stop_workers(self) -> None:
        for control, process in zip(self.controls, self.processes, strict=True):
            if process.is_alive():
                with contextlib.suppress(Exception):
                    control.put(("stop",))
        for process in self.processes:
            process.join(timeout=15)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


async def run(
    scenario: Scenario,
    *,
    console: Console | None = None,
    progress: bool = False,
    node_env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one load test; the report (also written where the scenario says)."""
    coordinator = Coordinator(
        scenario, console or Console(stderr=True), progress, node_env, log_dir
    )
    return await coordinator.run()
