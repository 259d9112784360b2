"""What a load test runs: one ``Scenario``, from defaults, a TOML file and flags (in that order).

Every value is parsed and checked here; a bad one ends the run before anything starts, with
a one-line ``ScenarioError`` that names the key and what it accepts.
"""

from __future__ import annotations

import ipaddress
import math
import random
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

REST_ROUTES = ("history", "channels", "me")
MAX_SOURCE_ADDRESSES = 1024


class ScenarioError(ValueError):
    """A scenario value that cannot be used; the message is one line for the operator."""


@dataclass(frozen=True)
class Members:
    """How many members each channel gets: fixed, uniform or log-uniform in [low, high]."""

    kind: Literal["fixed", "uniform", "loguniform"]
    low: int
    high: int

    def sample(self, rng: random.Random, users: int) -> int:
        if self.kind == "fixed":
            count = self.low
        elif self.kind == "uniform":
            count = rng.randint(self.low, self.high)
        else:  # many small channels, few large ones
            count = round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return min(count, users)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return str(self.low)
        prefix = "" if self.kind == "uniform" else "loguniform:"
        return f"{prefix}{self.low}:{self.high}"


@dataclass(frozen=True)
class Shape:
    """The send rate over time; ``sends_by(t)`` is how many sends are due t seconds in.

    steady: ``rate`` throughout. ramp[:S]: from 0 up to ``rate`` over the first S seconds
    (default: half the run), then ``rate``. burst[:EVERY[:LENGTH]]: the mean is ``rate``, but
    each EVERY-second period's sends (default 10) all go out in its first LENGTH seconds
    (default 1), i.e. at ``rate * EVERY / LENGTH``.
    """

    kind: Literal["steady", "ramp", "burst"]
    ramp_seconds: float | None = None
    burst_every: float = 10.0
    burst_seconds: float = 1.0

    def sends_by(self, t: float, rate: float, duration: float) -> float:
        t = max(0.0, min(t, duration))
        if self.kind == "steady":
            return rate * t
        if self.kind == "ramp":
            ramp = min(self.ramp_seconds or duration / 2, duration)
            if t <= ramp:
                return rate * t * t / (2 * ramp)
            return rate * ramp / 2 + rate * (t - ramp)
        periods, into = divmod(t, self.burst_every)
        per_period = rate * self.burst_every
        return per_period * periods + per_period * min(into / self.burst_seconds, 1.0)

    def total(self, rate: float, duration: float) -> float:
        return self.sends_by(duration, rate, duration)

    def __str__(self) -> str:
        if self.kind == "ramp" and self.ramp_seconds is not None:
            return f"ramp:{self.ramp_seconds:g}"
        if self.kind == "burst":
            return f"burst:{self.burst_every:g}:{self.burst_seconds:g}"
        return self.kind


@dataclass(frozen=True)
class Fault:
    """kill -9 the spawned node ``node`` at ``at`` seconds into the sending phase."""

    node: int
    at: float

    def __str__(self) -> str:
        return f"kill:{self.node}@{self.at:g}"


@dataclass(frozen=True)
class Scenario:
    urls: tuple[str, ...] = ("http://127.0.0.1:8000",)
    spawn_nodes: int = 0
    users: int = 100
    connections_per_user: int = 1
    channels: int = 10
    members: Members = Members("uniform", 2, 10)
    rate: float = 10.0
    shape: Shape = Shape("steady")
    duration: float = 30.0
    rest_mix: Mapping[str, float] = field(default_factory=dict)
    processes: int = 2
    source_addresses: tuple[str, ...] = ()
    body_bytes: int = 64
    connect_concurrency: int = 100
    connect_timeout: float = 10.0
    drain_timeout: float = 15.0
    retry_refused: bool = True  # send a refused send again after retry_after_ms, as clients do
    setup_concurrency: int = 8
    seed: int = 1
    faults: tuple[Fault, ...] = ()
    fault_restart_after: float = 2.0
    state: str | None = None
    report_json: str | None = None
    report_md: str | None = None

    @property
    def connections(self) -> int:
        return self.users * self.connections_per_user

    @property
    def worker_count(self) -> int:
        return max(1, min(self.processes, self.connections))

    def summary(self) -> dict[str, Any]:
        """The scenario as plain values (for the report)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Members | Shape):
                value = str(value)
            elif f.name == "faults":
                value = [str(fault) for fault in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


# Parsers: each takes a TOML value or a flag's string and returns the typed value.


def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ScenarioError("must be an integer")
        if isinstance(value, str):
            try:
                value = int(value.replace("_", ""))
            except ValueError:
                raise ScenarioError(f"must be an integer, not {value!r}") from None
        if not isinstance(value, int):
            raise ScenarioError("must be an integer")
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise ScenarioError(f"must be {bound}, not {value}")
        return value

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "yes", "on", "1"}:
        return True
    if isinstance(value, str) and value.lower() in {"false", "no", "off", "0"}:
        return False
    raise ScenarioError(f"must be true or false, not {value!r}")


def _seconds(low: float, *, strict: bool = False) -> Callable[[Any], float]:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ScenarioError("must be a number of seconds")
        if isinstance(value, str):
            text = value.strip().lower()
            scale = 1.0
            for suffix in ("ms", "s", "m", "h"):
                if text.endswith(suffix):
                    text, scale = text[: -len(suffix)], units[suffix]
                    break
            try:
                value = float(text) * scale
            except ValueError:
                raise ScenarioError(f"must be seconds (e.g. 30, 30s, 2m), not {value!r}") from None
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ScenarioError("must be a number of seconds")
        if value < low or (strict and value == low):
            raise ScenarioError(f"must be {'>' if strict else '>='} {low:g}, not {value:g}")
        return float(value)

    return parse


def _rate(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ScenarioError(f"must be a number (messages/s), not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError("must be a number (messages/s)")
    if value < 0:
        raise ScenarioError(f"must be >= 0, not {value:g}")
    return float(value)


def _optional_path(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | Path):
        raise ScenarioError("must be a file path")
    return str(value)


def _list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value]
    raise ScenarioError("must be a list of strings or a comma-separated string")


def parse_urls(value: Any) -> tuple[str, ...]:
    urls = _list(value)
    if not urls:
        raise ScenarioError("needs at least one URL")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ScenarioError(f"{url!r} is not an http(s)://host[:port] URL")
    return tuple(url.rstrip("/") for url in urls)


def parse_members(value: Any) -> Members:
    """``N``, ``A:B`` (= ``uniform:A:B``) or ``loguniform:A:B``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ScenarioError("must be N, A:B, uniform:A:B or loguniform:A:B")
    parts = value.strip().split(":")
    kind = "uniform"
    if parts[0] in ("uniform", "loguniform"):
        kind = parts.pop(0)
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ScenarioError(
            f"{value!r} is not N, A:B, uniform:A:B or loguniform:A:B (integers)"
        ) from None
    if len(numbers) == 1 and kind == "uniform" and ":" not in value:
        low = high = numbers[0]
        kind = "fixed"
    elif len(numbers) == 2:
        low, high = numbers
    else:
        raise ScenarioError(f"{value!r} is not N, A:B, uniform:A:B or loguniform:A:B")
    if low < 1 or high < low:
        raise ScenarioError(f"{value!r}: needs 1 <= A <= B")
    return Members(kind, low, high)  # type: ignore[arg-type]


def parse_shape(value: Any) -> Shape:
    """``steady``, ``ramp[:SECONDS]`` or ``burst[:EVERY[:LENGTH]]``."""
    if not isinstance(value, str):
        raise ScenarioError("must be steady, ramp[:SECONDS] or burst[:EVERY[:LENGTH]]")
    kind, *args = value.strip().lower().split(":")
    try:
        numbers = [float(a) for a in args]
    except ValueError:
        raise ScenarioError(f"{value!r}: the parameters are numbers of seconds") from None
    if any(not math.isfinite(n) or n <= 0 for n in numbers):
        raise ScenarioError(f"{value!r}: the parameters must be > 0")
    if kind == "steady" and not numbers:
        return Shape("steady")
    if kind == "ramp" and len(numbers) <= 1:
        return Shape("ramp", numbers[0] if numbers else None)
    if kind == "burst" and len(numbers) <= 2:
        every = numbers[0] if numbers else 10.0
        length = numbers[1] if len(numbers) > 1 else min(1.0, every)
        if length > every:
            raise ScenarioError(f"{value!r}: the burst is longer than its period")
        return Shape("burst", None, every, length)
    raise ScenarioError(f"{value!r} is not steady, ramp[:SECONDS] or burst[:EVERY[:LENGTH]]")


def parse_rest_mix(value: Any) -> dict[str, float]:
    """Requests per second per route: ``history=5,channels=2,me=1`` or a TOML table."""
    if isinstance(value, str):
        pairs: dict[str, Any] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, number = item.partition("=")
            if not sep:
                raise ScenarioError(f"{item.strip()!r} is not ROUTE=REQUESTS_PER_SECOND")
            pairs[name.strip()] = number.strip()
        value = pairs
    if not isinstance(value, Mapping):
        raise ScenarioError("must be ROUTE=REQUESTS_PER_SECOND pairs")
    mix: dict[str, float] = {}
    for name, number in value.items():
        if name not in REST_ROUTES:
            raise ScenarioError(f"unknown route {name!r} (known: {', '.join(REST_ROUTES)})")
        try:
            mix[name] = _rate(number)
        except ScenarioError as exc:
            raise ScenarioError(f"{name}: {exc}") from None
    return {name: rate for name, rate in mix.items() if rate > 0}


def parse_source_addresses(value: Any) -> tuple[str, ...]:
    """``127.0.0.1-127.0.0.8`` (a range), a comma-separated list, or a TOML list."""
    items = _list(value)
    addresses: list[str] = []
    for item in items:
        first, sep, last = item.partition("-")
        try:
            start = ipaddress.IPv4Address(first.strip())
            end = ipaddress.IPv4Address(last.strip()) if sep else start
        except ValueError:
            raise ScenarioError(f"{item!r} is not an IPv4 address or A-B range") from None
        if end < start:
            raise ScenarioError(f"{item!r}: the range runs backwards")
        if int(end) - int(start) + 1 + len(addresses) > MAX_SOURCE_ADDRESSES:
            raise ScenarioError(f"more than {MAX_SOURCE_ADDRESSES} source addresses")
        addresses.extend(str(ipaddress.IPv4Address(n)) for n in range(int(start), int(end) + 1))
    if len(set(addresses)) != len(addresses):
        raise ScenarioError("a source address is listed twice")
    return tuple(addresses)


def parse_faults(value: Any) -> tuple[Fault, ...]:
    """``kill:NODE@SECONDS``, several separated by commas (or a TOML list)."""
    faults = []
    for item in _list(value):
        action, _, rest = item.partition(":")
        node, at_sep, at = rest.partition("@")
        try:
            if action != "kill" or not at_sep:
                raise ValueError
            fault = Fault(int(node), float(at))
        except ValueError:
            raise ScenarioError(f"{item!r} is not kill:NODE@SECONDS") from None
        if fault.node < 0 or not math.isfinite(fault.at) or fault.at < 0:
            raise ScenarioError(f"{item!r}: the node and the time must be >= 0")
        faults.append(fault)
    return tuple(faults)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "urls": parse_urls,
    "spawn_nodes": _int(0, 16),
    "users": _int(1),
    "connections_per_user": _int(1, 1000),
    "channels": _int(1),
    "members": parse_members,
    "rate": _rate,
    "shape": parse_shape,
    "duration": _seconds(0, strict=True),
    "rest_mix": parse_rest_mix,
    "processes": _int(1, 256),
    "source_addresses": parse_source_addresses,
    "body_bytes": _int(32, 4000),
    "connect_concurrency": _int(1, 100_000),
    "connect_timeout": _seconds(0, strict=True),
    "drain_timeout": _seconds(0, strict=True),
    "retry_refused": _bool,
    "setup_concurrency": _int(1, 1000),
    "seed": _int(0),
    "faults": parse_faults,
    "fault_restart_after": _seconds(0),
    "state": _optional_path,
    "report_json": _optional_path,
    "report_md": _optional_path,
}


def read_toml(path: Path) -> dict[str, Any]:
    """A scenario file's keys (``-`` or ``_`` spelling), or a one-line error."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"scenario file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario file {path}: {exc}") from None
    if isinstance(data.get("scenario"), dict) and len(data) == 1:
        data = data["scenario"]
    values = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(values) - set(PARSERS))
    if unknown:
        raise ScenarioError(
            f"scenario file {path}: unknown key {unknown[0]!r} (known: {', '.join(PARSERS)})"
        )
    return values


def build(values: Mapping[str, Any]) -> Scenario:
    """A checked ``Scenario`` from raw values (TOML types or flag strings)."""
    parsed: dict[str, Any] = {}
    for key, raw in values.items():
        parser = PARSERS.get(key)
        if parser is None:
            raise ScenarioError(f"unknown setting {key!r}")
        try:
            parsed[key] = parser(raw)
        except ScenarioError as exc:
            raise ScenarioError(f"{key.replace('_', '-')}: {exc}") from None
    scenario = Scenario(**parsed)
    _check(scenario)
    return scenario


def load(path: Path | None, overrides: Mapping[str, Any]) -> Scenario:
    """Defaults, then the scenario file, then every flag that was given."""
    values: dict[str, Any] = read_toml(path) if path is not None else {}
    values.update({key: value for key, value in overrides.items() if value is not None})
    return build(values)


def _check(s: Scenario) -> None:
    """The rules between values."""
    if s.members.low > s.users:
        raise ScenarioError(f"members: channels of {s.members.low}+ members need that many users")
    for fault in s.faults:
        if not s.spawn_nodes:
            raise ScenarioError(
                "fault: kill:NODE@SECONDS needs --spawn-nodes (the tool kills and restarts "
                "the nodes it started)"
            )
        if fault.node >= s.spawn_nodes:
            raise ScenarioError(f"fault: node {fault.node} does not exist (0..{s.spawn_nodes - 1})")
        if fault.at >= s.duration:
            raise ScenarioError(f"fault: {fault} comes after the run ends ({s.duration:g} s)")
    if s.faults and s.spawn_nodes < 2:
        raise ScenarioError("fault: needs --spawn-nodes 2 or more, so clients have a node to go to")
