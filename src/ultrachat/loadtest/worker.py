"""One load-test process: its share of the WebSocket connections, sends and REST calls.

Each connection speaks the protocol of docs/realtime.md: hello (with ``resume`` after a
reconnect), then events, acks and errors. Per channel it keeps ``head``, the last seq it
has (starting from the channel's seq when the run began), the seqs it skipped (gaps) and
how many frames came twice; the coordinator turns those into lost and duplicated
deliveries. A message's body starts with ``lt:<time.time_ns() at send>;``, so whoever
receives it measures the end-to-end latency (every process is on one machine, one clock).

A connection that closes (a node killed, a 4408) reconnects to the next node, resumes
every channel from its head and sends again, with the same ``client_msg_id``, what was not
acked: the server's idempotency turns those into the original ack.

A send the server refuses with a code that says "not stored, try again" (``overloaded``
from send admission, ``unavailable``, ``internal_error``) is sent again, as a client does.
When: the frame's ``retry_after_ms``, which the server sets from how far behind it is; a
refusal without one waits 1 s, doubled for each further refusal of that message (at most
``MAX_RETRY_DELAY``). Either way stretched by up to half at random, so the refused do not
all come back at once. Its latencies still count from the first attempt: that is how late
the message was for its reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import resource
import socket
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from ultrachat.loadtest.client import KEEPALIVE, Link, reason
from ultrachat.loadtest.histogram import Histogram
from ultrachat.loadtest.scenario import Shape

TICK = 0.005  # the sender's and REST loop's step
MAX_REST_INFLIGHT = 64
# The longest a drain waits for a backlog that is still arriving (``Worker.wait``).
MAX_DRAIN_SECONDS = 600.0
# Refusals after which the same send is tried again (docs/realtime.md, "Error codes").
RETRYABLE = frozenset({"overloaded", "unavailable", "internal_error"})
DEFAULT_RETRY_AFTER = 1.0  # seconds, for a refusal that names no retry_after_ms
MAX_RETRY_DELAY = 30.0


@dataclass
class ConnPlan:
    user: int  # index into the run's users
    node: int  # index into the worker's URLs
    source: str | None  # local address to bind, or None for the kernel's choice


@dataclass
class WorkerPlan:
    index: int
    ws_urls: list[str]
    http_urls: list[str]
    tokens: dict[int, str]  # user index → access token
    user_channels: dict[int, list[int]]  # user index → channel indexes
    channel_ids: dict[int, str]  # channel index → id
    connections: list[ConnPlan]
    rate: float  # this process's share of messages/s
    rest_mix: dict[str, float]  # this process's share of requests/s per route
    shape: Shape
    duration: float
    body_bytes: int
    connect_concurrency: int
    connect_timeout: float
    drain_timeout: float
    seed: int
    run_id: str = "run"  # in every client_msg_id: a later run must not hit the idempotency
    rest_source: str | None = None
    retry_refused: bool = True  # send a retryable refusal again, as a client does


@dataclass
class Stats:
    """Counters a worker keeps; the coordinator merges them."""

    connect_ok: int = 0
    connect_failed: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    duplicates: int = 0
    reorders: int = 0
    resets: int = 0
    early: int = 0
    foreign: int = 0
    extra_acks: int = 0
    send_errors: Counter[str] = field(default_factory=Counter)  # refusals, retried or not
    retried: int = 0  # sends made again after a refusal
    other_errors: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    resent: int = 0
    reconnect_attempts_failed: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    rest_ok: Counter[str] = field(default_factory=Counter)
    rest_errors: Counter[str] = field(default_factory=Counter)  # "route status"
    rest_skipped: int = 0
    max_open: int = 0
    e2e: Histogram = field(default_factory=Histogram)
    ack: Histogram = field(default_factory=Histogram)
    connect: Histogram = field(default_factory=Histogram)
    reconnect: Histogram = field(default_factory=Histogram)
    rest: dict[str, Histogram] = field(default_factory=lambda: defaultdict(Histogram))


class Conn:
    """One WebSocket client: its channels' heads, gaps and duplicates, its unacked sends.

    While connected it has no task: its link calls ``on_frame`` from picows' callback. A
    task exists only while it reconnects."""

    def __init__(self, worker: Worker, plan: ConnPlan) -> None:
        self.w = worker
        self.user = plan.user
        self.node = plan.node
        self.source = plan.source
        self.token = worker.plan.tokens[plan.user]
        self.channels = worker.plan.user_channels[plan.user]
        self.slots = worker.slots[plan.user]  # channel id → slot
        self.heads = [0] * len(self.channels)
        self.gaps: dict[int, set[int]] = {}
        self.duplicates = 0
        self.pending: dict[str, tuple[int, int, bytes]] = {}  # client_msg_id → chan, ns, frame
        self.refused: dict[str, int] = {}  # client_msg_id → refusals so far, while pending
        self.retrying: dict[str, asyncio.TimerHandle] = {}  # the refused, waiting to retry
        self.link: Link | None = None
        self.live = False
        self.established = False
        self.task: asyncio.Task[None] | None = None  # the reconnect under way

    # Connecting

    async def open(self, node: int) -> Link:
        w = self.w
        hello: dict[str, Any] = {"type": "hello", "token": self.token}
        if self.live:
            hello["resume"] = {
                w.plan.channel_ids[chan]: self.heads[slot]
                for slot, chan in enumerate(self.channels)
            }
        source = None if self.source is None else (await w.address(node), self.source)
        return await Link.connect(
            self, w.plan.ws_urls[node], orjson.dumps(hello), w.plan.connect_timeout, source
        )

    async def connect(self) -> None:
        start = time.perf_counter()
        try:
            self.link = await self.open(self.node)
        except Exception as exc:
            self.w.stats.connect_failed += 1
            self.w.stats.connect_failures[reason(exc)] += 1
            return
        self.w.stats.connect.record((time.perf_counter() - start) * 1e6)
        self.w.stats.connect_ok += 1
        self.established = True

    def on_closed(self, code: int) -> None:
        """The link's close (picows' callback): reconnect, unless the run is stopping."""
        self.link = None
        if self.w.stopping:
            return
        self.w.stats.close_codes[str(code)] += 1
        self.task = asyncio.get_running_loop().create_task(self.reconnect())

    def on_error(self, reason: str) -> None:
        self.w.stats.other_errors[reason] += 1

    async def reconnect(self) -> None:
        """To the next node, with jittered backoff; resume, and resend what was not acked."""
        w = self.w
        lost_at = time.perf_counter()
        attempt = 0
        node = self.node
        while True:
            node = (node + 1) % len(w.plan.ws_urls)
            try:
                link = await self.open(node)
                break
            except Exception:
                w.stats.reconnect_attempts_failed += 1
                if w.stopping:
                    return
                attempt += 1
                jitter = random.random()  # noqa: S311 - spreads retries, not a secret
                await asyncio.sleep(min(1.0, 0.05 * 2 ** min(attempt, 5)) * jitter)
        self.task = None
        if w.stopping:
            link.drop()
            return
        self.node = node
        w.stats.reconnects += 1
        w.stats.reconnect.record((time.perf_counter() - lost_at) * 1e6)
        # What waits for its retry time goes out then, on whichever link is up.
        resend = [entry for cmid, entry in self.pending.items() if cmid not in self.retrying]
        w.stats.resent += len(resend)
        self.link = link
        for _chan, _ns, frame in resend:
            link.send(frame)

    # Frames

    def on_frame(self, raw: bytes | str) -> None:
        frame = orjson.loads(raw)
        kind = frame["type"]
        w = self.w
        if kind == "event":
            if not self.live:
                w.stats.early += 1
                return
            slot = self.slots.get(frame["channel_id"])
            if slot is None:
                w.stats.foreign += 1
                return
            seq = frame["seq"]
            head = self.heads[slot]
            if seq == head + 1:
                self.heads[slot] = seq
            elif seq > head:
                self.gaps.setdefault(slot, set()).update(range(head + 1, seq))
                self.heads[slot] = seq
            else:
                missing = self.gaps.get(slot)
                if missing is not None and seq in missing:
                    missing.discard(seq)
                    w.stats.reorders += 1
                else:
                    self.duplicates += 1
                    w.stats.duplicates += 1
                    return
            if frame["event"] == "message.created":
                body = frame["data"].get("body") or ""
                if body.startswith("lt:"):
                    sent_ns = int(body[3 : body.index(";")])
                    w.stats.e2e.record((time.time_ns() - sent_ns) / 1000.0)
                    w.stats.delivered += 1
        elif kind == "ack":
            client_msg_id = frame["client_msg_id"]
            entry = self.pending.pop(client_msg_id, None)
            if entry is None:
                w.stats.extra_acks += 1
                return
            self.refused.pop(client_msg_id, None)
            chan, sent_ns, _ = entry
            w.stats.ack.record((time.time_ns() - sent_ns) / 1000.0)
            w.stats.acked += 1
            w.acks[chan].append(frame["seq"])
        elif kind == "error":
            client_msg_id = frame.get("client_msg_id")
            code = str(frame.get("code"))
            if not isinstance(client_msg_id, str) or client_msg_id not in self.pending:
                w.stats.other_errors[code] += 1
            else:
                w.stats.send_errors[code] += 1
                if w.plan.retry_refused and code in RETRYABLE:
                    self.retry_later(client_msg_id, frame.get("retry_after_ms"))
                else:
                    del self.pending[client_msg_id]
                    self.refused.pop(client_msg_id, None)
        elif kind == "reset":
            slot = self.slots.get(frame["channel_id"])
            w.stats.resets += 1
            if slot is not None and self.live and frame["seq"] > self.heads[slot]:
                # Skipped over WebSocket: a real client fetches them over REST. Counted lost.
                self.gaps.setdefault(slot, set()).update(
                    range(self.heads[slot] + 1, frame["seq"] + 1)
                )
                self.heads[slot] = frame["seq"]

    # Sending

    def send(self, chan: int) -> None:
        w = self.w
        w.counter += 1
        client_msg_id = f"{w.plan.run_id}.{w.plan.index}.{w.counter}"
        sent_ns = time.time_ns()
        body = f"lt:{sent_ns};{client_msg_id};"
        body += "x" * max(0, w.plan.body_bytes - len(body))
        frame = orjson.dumps(
            {
                "type": "send",
                "channel_id": w.plan.channel_ids[chan],
                "body": body,
                "client_msg_id": client_msg_id,
            }
        )
        self.pending[client_msg_id] = (chan, sent_ns, frame)
        w.stats.sent += 1
        if self.link is not None:  # otherwise it goes out when the connection is back
            self.link.send(frame)

    def retry_later(self, client_msg_id: str, retry_after_ms: Any) -> None:
        """Plan the refused send's next attempt: when the server said, or else backing off.

        The server's delay is used as it is, not doubled: it already grows with the node's
        lag, and a client that doubled a fixed delay turned a burst the node clears in 8 s
        into retries arriving two minutes later (docs/benchmarks.md)."""
        if self.w.stopping:
            return
        # One copy of a send is out at a time (a reconnect resends none that waits here), so
        # one retry is planned per refusal; one planned already would be replaced.
        if (planned := self.retrying.pop(client_msg_id, None)) is not None:
            planned.cancel()
        refusals = self.refused[client_msg_id] = self.refused.get(client_msg_id, 0) + 1
        if isinstance(retry_after_ms, int | float) and not isinstance(retry_after_ms, bool):
            delay = min(MAX_RETRY_DELAY, max(0.0, retry_after_ms / 1000.0))
        else:
            delay = min(MAX_RETRY_DELAY, DEFAULT_RETRY_AFTER * 2 ** (refusals - 1))
        delay *= 1.0 + 0.5 * self.w.rng.random()
        self.retrying[client_msg_id] = asyncio.get_running_loop().call_later(
            delay, self.retry, client_msg_id
        )

    def retry(self, client_msg_id: str) -> None:
        self.retrying.pop(client_msg_id, None)
        entry = self.pending.get(client_msg_id)
        if entry is None or self.w.stopping:
            return
        self.w.stats.retried += 1
        if self.link is not None:  # otherwise the reconnect sends it with the rest
            self.link.send(entry[2])

    def behind(self, targets: dict[int, int]) -> bool:
        return any(
            self.heads[slot] < targets.get(chan, 0) for slot, chan in enumerate(self.channels)
        )

    def state(self) -> tuple[int, list[int], dict[int, list[int]], int]:
        return (
            self.user,
            self.heads,
            {s: sorted(g) for s, g in self.gaps.items() if g},
            self.duplicates,
        )


class Worker:
    def __init__(self, plan: WorkerPlan, control: Any, out: Any) -> None:
        self.plan = plan
        self.control = control
        self.out = out
        self.stats = Stats()
        self.acks: dict[int, list[int]] = defaultdict(list)
        self.counter = 0
        self.cpu_seconds = 0.0
        self.stopping = False
        self.slots = {
            user: {plan.channel_ids[c]: slot for slot, c in enumerate(chans)}
            for user, chans in plan.user_channels.items()
        }
        self.conns = [Conn(self, c) for c in plan.connections]
        self.rng = random.Random(plan.seed * 7919 + plan.index)  # noqa: S311 - a workload
        self._addresses: dict[int, tuple[str, int]] = {}
        self._window = {"e2e": Histogram(), "ack": Histogram(), "rest": Histogram()}

    async def address(self, node: int) -> tuple[str, int]:
        if node not in self._addresses:
            parts = urlsplit(self.plan.ws_urls[node])
            port = parts.port or (443 if parts.scheme == "wss" else 80)
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, port, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
            address = infos[0][4]
            self._addresses[node] = (str(address[0]), int(address[1]))
        return self._addresses[node]

    async def command(self) -> tuple[Any, ...]:
        """The coordinator's next command (polled: the queue is a multiprocessing one)."""
        while True:
            try:
                message: tuple[Any, ...] = self.control.get_nowait()
                return message
            except queue.Empty:
                await asyncio.sleep(0.02)

    # Phases

    async def run(self) -> None:
        background = (
            asyncio.create_task(self.report_every_second()),
            asyncio.create_task(self.keepalive()),
        )
        limit = asyncio.Semaphore(self.plan.connect_concurrency)

        async def connect(conn: Conn) -> None:
            async with limit:
                await conn.connect()

        await asyncio.gather(*(connect(c) for c in self.conns))
        self.out.put(("connected", self.plan.index, self.stats.connect_ok))

        command = await self.command()
        if command[0] == "stop":
            await self.finish(*background)
            return
        _, t0, heads = command
        for conn in self.conns:
            for slot, chan in enumerate(conn.channels):
                conn.heads[slot] = heads[chan]
            conn.live = True
        http = self.http_clients()
        try:
            cpu = time.process_time()
            await asyncio.gather(self.send_loop(t0), self.rest_loop(t0, http))
            self.cpu_seconds = time.process_time() - cpu  # this process, sending phase
            await self.wait(lambda: not any(c.pending for c in self.conns), self._progress)
            self.out.put(("sent", self.plan.index, {c: max(s) for c, s in self.acks.items() if s}))
            command = await self.command()
            if command[0] == "drain":
                targets = command[1]
                await self.wait(
                    lambda: not any(c.behind(targets) for c in self.conns if c.established),
                    self._progress,
                )
        finally:
            for client in http:
                await client.aclose()
        await self.finish(*background)

    def _progress(self) -> tuple[int, int, int]:
        """What arriving acks, errors, retries and frames move: the drain waits while it
        moves."""
        s = self.stats
        return s.acked + sum(s.send_errors.values()), s.retried, s.delivered

    async def wait(self, done: Any, progress: Any) -> None:
        """Until ``done()`` (polled: it looks at every connection), or ``drain_timeout``
        seconds in which ``progress()`` did not change: an overloaded server that is still
        delivering its backlog is waited for (up to ``MAX_DRAIN_SECONDS``), so what is
        reported lost is what stopped coming, not what was still queued."""
        started = last_change = time.monotonic()
        seen = progress()
        while not done():
            await asyncio.sleep(0.1)
            now = time.monotonic()
            # A send waiting for its retry is not a stall, however long the server asked
            # it to wait.
            if (current := progress()) != seen or any(c.retrying for c in self.conns):
                seen, last_change = current, now
            if now - last_change >= self.plan.drain_timeout or now - started >= MAX_DRAIN_SECONDS:
                return

    async def finish(self, *background: asyncio.Task[None]) -> None:
        self.stopping = True
        for task in background:
            task.cancel()
        for conn in self.conns:
            for planned in conn.retrying.values():
                planned.cancel()
        tasks = [c.task for c in self.conns if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A closing handshake on every connection, as a client leaving would; then the rest.
        links = [c.link for c in self.conns if c.link is not None]
        for link in links:
            link.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(link.closed() for link in links), return_exceptions=True), 10
            )
        for link in links:
            link.drop()
        self.out.put(("result", self.plan.index, self.result()))

    async def keepalive(self) -> None:
        """One sweep for every connection's keepalive (``Link.keepalive``)."""
        while True:
            await asyncio.sleep(KEEPALIVE)
            for conn in self.conns:
                if conn.link is not None:
                    conn.link.keepalive()

    async def send_loop(self, t0: float) -> None:
        plan = self.plan
        senders = [c for c in self.conns if c.established and c.channels]
        if not senders or plan.rate <= 0:
            return
        done = 0
        while True:
            elapsed = time.time() - t0
            due = int(plan.shape.sends_by(elapsed, plan.rate, plan.duration)) - done
            for _ in range(due):
                conn = self.rng.choice(senders)
                conn.send(self.rng.choice(conn.channels))
            done += max(due, 0)
            if elapsed >= plan.duration:
                return
            await asyncio.sleep(TICK)

    def http_clients(self) -> list[httpx.AsyncClient]:
        transport_args: dict[str, Any] = {}
        if self.plan.rest_source:
            transport_args["local_address"] = self.plan.rest_source
        return [
            httpx.AsyncClient(
                base_url=url,
                timeout=30.0,
                trust_env=False,
                transport=httpx.AsyncHTTPTransport(
                    limits=httpx.Limits(max_connections=MAX_REST_INFLIGHT), **transport_args
                ),
            )
            for url in self.plan.http_urls
        ]

    async def rest_loop(self, t0: float, http: list[httpx.AsyncClient]) -> None:
        plan = self.plan
        users = [u for u in plan.user_channels if plan.user_channels[u]] or list(plan.tokens)
        if not plan.rest_mix or not users:
            return
        done = dict.fromkeys(plan.rest_mix, 0)
        inflight: set[asyncio.Task[None]] = set()
        while True:
            elapsed = min(time.time() - t0, plan.duration)
            for route, rate in plan.rest_mix.items():
                due = int(rate * elapsed) - done[route]
                done[route] += max(due, 0)
                for _ in range(due):
                    if len(inflight) >= MAX_REST_INFLIGHT:
                        self.stats.rest_skipped += 1
                        continue
                    task = asyncio.create_task(self.rest_call(route, self.rng.choice(users), http))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
            if elapsed >= plan.duration:
                break
            await asyncio.sleep(TICK)
        await asyncio.gather(*inflight, return_exceptions=True)

    async def rest_call(self, route: str, user: int, http: list[httpx.AsyncClient]) -> None:
        plan = self.plan
        if route == "history":
            chan = self.rng.choice(plan.user_channels[user])
            path = f"/api/v1/channels/{plan.channel_ids[chan]}/messages?limit=50"
        elif route == "channels":
            path = "/api/v1/channels"
        else:
            path = "/api/v1/users/me"
        headers = {"Authorization": f"Bearer {plan.tokens[user]}"}
        node = self.rng.randrange(len(http))
        start = time.perf_counter()
        for attempt in range(2):  # a refused connection goes to the next node, as behind an LB
            try:
                response = await http[(node + attempt) % len(http)].get(path, headers=headers)
                break
            except httpx.TransportError as exc:
                if attempt == 1 or not isinstance(exc, httpx.ConnectError):
                    self.stats.rest_errors[f"{route} {type(exc).__name__}"] += 1
                    return
        elapsed = (time.perf_counter() - start) * 1e6
        if 200 <= response.status_code < 300:
            self.stats.rest_ok[route] += 1
            self.stats.rest[route].record(elapsed)
            self._window["rest"].record(elapsed)
        else:
            self.stats.rest_errors[f"{route} {response.status_code}"] += 1

    # Reporting

    def open_count(self) -> int:
        return sum(1 for c in self.conns if c.link is not None)

    async def report_every_second(self) -> None:
        e2e_seen, ack_seen = Histogram(), Histogram()
        while True:
            await asyncio.sleep(1.0)
            s = self.stats
            opened = self.open_count()
            s.max_open = max(s.max_open, opened)
            # The last second's latencies: what the totals gained since the last report.
            window_e2e, window_ack = _since(s.e2e, e2e_seen), _since(s.ack, ack_seen)
            self.out.put(
                (
                    "stats",
                    self.plan.index,
                    {
                        "open": opened,
                        "connect_ok": s.connect_ok,
                        "connect_failed": s.connect_failed,
                        "sent": s.sent,
                        "acked": s.acked,
                        "delivered": s.delivered,
                        "errors": _errors(s),
                        "reconnects": s.reconnects,
                        "rest": sum(s.rest_ok.values()),
                        "e2e": window_e2e.to_wire(),
                        "ack": window_ack.to_wire(),
                        "rest_window": self._window["rest"].take().to_wire(),
                    },
                )
            )

    def result(self) -> dict[str, Any]:
        s = self.stats
        s.max_open = max(s.max_open, self.open_count())
        return {
            "connect_ok": s.connect_ok,
            "connect_failed": s.connect_failed,
            "connect_failures": dict(s.connect_failures),
            "sent": s.sent,
            "acked": s.acked,
            "unacked": sum(len(c.pending) for c in self.conns),
            "delivered_seen": s.delivered,
            "duplicates_seen": s.duplicates,
            "reorders": s.reorders,
            "resets": s.resets,
            "early": s.early,
            "foreign": s.foreign,
            "extra_acks": s.extra_acks,
            "send_errors": dict(s.send_errors),
            "retried": s.retried,
            "other_errors": dict(s.other_errors),
            "reconnects": s.reconnects,
            "resent": s.resent,
            "reconnect_attempts_failed": s.reconnect_attempts_failed,
            "close_codes": dict(s.close_codes),
            "rest_ok": dict(s.rest_ok),
            "rest_errors": dict(s.rest_errors),
            "rest_skipped": s.rest_skipped,
            "max_open": s.max_open,
            "cpu_seconds": self.cpu_seconds,
            "users": len({c.user for c in self.conns if c.established}),
            "hist": {
                "e2e": s.e2e.to_wire(),
                "ack": s.ack.to_wire(),
                "connect": s.connect.to_wire(),
                "reconnect": s.reconnect.to_wire(),
                **{f"rest:{route}": h.to_wire() for route, h in s.rest.items()},
            },
            "acks": dict(self.acks),
            "conns": [c.state() for c in self.conns if c.established],
        }


def _errors(s: Stats) -> int:
    return (
        s.connect_failed
        + sum(s.send_errors.values())
        + sum(s.other_errors.values())
        + sum(s.rest_errors.values())
        + s.rest_skipped
    )


def _since(total: Histogram, seen: Histogram) -> Histogram:
    """The samples ``total`` gained since ``seen`` (then ``seen`` catches up)."""
    window = Histogram()
    for index, n in total.counts.items():
        gained = n - seen.counts.get(index, 0)
        if gained:
            window.counts[index] = gained
            window.count += gained
    window.low, window.high = total.low, total.high
    window.total = total.total - seen.total
    seen.counts, seen.count, seen.total = dict(total.counts), total.count, total.total
    return window


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(plan: WorkerPlan, control: Any, out: Any) -> None:
    """The process's entry point (multiprocessing, 'spawn')."""
    _raise_open_files()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    try:
        runner(Worker(plan, control, out).run())
    except BaseException:
        out.put(("failed", plan.index, traceback.format_exc()))
        raise
