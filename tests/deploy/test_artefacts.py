"""The deploy artefacts: Prometheus alert rules and the Grafana dashboard.

Both are checked against what UltraChat really exports: every metric a rule or a panel
names must appear on /metrics of a running app (after some traffic), so a renamed series
breaks this test rather than an alert silently never firing.

With ``promtool`` the rules (and the dashboard's queries) are also checked by Prometheus's
own parser and the rules' unit tests run (deploy/prometheus/alerts_test.yml). promtool is
taken from PATH, or from a previous run's pytest cache, or extracted from Debian's
``prometheus`` package (``apt-get download`` and ``dpkg-deb``, never ``apt-get install``:
the package's init script would start a Prometheus server). Without it those tests skip
and the structural checks below stand alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # PyYAML: a dependency of uvicorn[standard]
from prometheus_client.parser import text_string_to_metric_families

from tests.auth.factories import account

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ultrachat.json"

# The MetricsCollector's gauges (metrics/monitoring.py). They are read from /metrics like
# every other series; this list only stands in for them if the collector is not installed
# in this tree, and test_the_collector_gauges_are_exported says when that is the case.
COLLECTOR_GAUGES = frozenset(
    {
        "ultrachat_up",
        "ultrachat_active_users",
        "ultrachat_requests_per_second",
        "ultrachat_error_ratio",
        "ultrachat_api_latency_seconds",
        "ultrachat_messages_in_per_second",
        "ultrachat_deliveries_out_per_second",
        "ultrachat_cache_hit_ratio",
        "ultrachat_bus_lag_seconds",
        "ultrachat_process_cpu_percent",
        "ultrachat_host_cpu_percent",
        "ultrachat_host_memory_used_bytes",
        "ultrachat_host_memory_total_bytes",
        "ultrachat_disk_used_bytes",
        "ultrachat_disk_total_bytes",
        "ultrachat_active_subscriptions",
        "ultrachat_mrr",
        "ultrachat_churn_ratio",
    }
)
# Series Prometheus makes itself for each scrape target.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# Labels Prometheus attaches to every scraped series (the scrape job's target labels).
TARGET_LABELS = frozenset({"instance", "job"})
SEVERITIES = {"critical", "warning", "info"}
KPIS = {"api_latency", "error_rate", "cache_hit_rate", "uptime", "realtime_connections"}

PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    | {"and", "or", "unless", "atan2", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(\s*\()?")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords or labels)."""
    text = _STRING.sub('""', expr)
    text = _GROUPING.sub("", text)
    text = _RANGE.sub("", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\$\w+", "", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.groups()
        if not call and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def matched_labels(expr: str) -> set[tuple[str, str]]:
    """(metric, label) for each label matcher written in a selector of ``expr``."""
    text = _STRING.sub('""', expr)
    pairs = set()
    for metric, matchers in _SELECTOR.findall(text):
        for part in matchers.split(","):
            label = _MATCHER.match(part)
            if label:
                pairs.add((metric, label.group(1)))
    return pairs


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{route=~"/api/.+",'
        ' x="by (y)"}[5m]))) > 0.1 and on (job) absent(b) or c offset 10m unless d{e="f"}'
        " / sum without (g) (max_over_time(h[$__range]))"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d", "h"}
    assert matched_labels(expr) == {("a_bucket", "route"), ("a_bucket", "x"), ("d", "e")}


# What UltraChat exports


def _series_names(family_name: str, kind: str) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }.get(kind, ("",))
    return {family_name + suffix for suffix in suffixes}


@pytest.fixture
async def exported(client: httpx.AsyncClient) -> dict[str, set[str]]:
    """Every series name on /metrics, after some traffic, with the labels its samples carry.

    Families whose labelled series have no sample yet (no decrypt failure so far) still
    have their TYPE line, so their names are here too, with no labels known."""
    user = await account(client)
    made = await client.post(
        "/api/v1/channels", json={"name": "metrics", "kind": "public"}, headers=user.headers
    )
    assert made.status_code == 201, made.text
    channel = made.json()["id"]
    sent = await client.post(
        f"/api/v1/channels/{channel}/messages", json={"body": "hi"}, headers=user.headers
    )
    assert sent.status_code == 201, sent.text
    for _ in range(2):
        await client.get(f"/api/v1/channels/{channel}", headers=user.headers)
        await client.get(f"/api/v1/channels/{channel}/messages", headers=user.headers)
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scraped.text):
        for name in _series_names(family.name, family.type):
            names.setdefault(name, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def allowed_names(exported: dict[str, set[str]]) -> set[str]:
    return set(exported) | SYNTHETIC | COLLECTOR_GAUGES


def assert_exported(where: str, expr: str, exported: dict[str, set[str]]) -> None:
    unknown = metric_names(expr) - allowed_names(exported)
    assert not unknown, f"{where} names series UltraChat does not export: {sorted(unknown)}"
    for metric, label in matched_labels(expr):
        known = exported.get(metric)
        if known and label not in TARGET_LABELS:  # labels are known once a sample exists
            assert label in known, f"{where}: {metric} has no label {label!r} ({sorted(known)})"


def test_the_collector_gauges_are_exported(exported: dict[str, set[str]]) -> None:
    present = COLLECTOR_GAUGES & set(exported)
    if not present:
        pytest.skip("the metrics collector is not in this tree; its gauges are allowlisted")
    assert present == COLLECTOR_GAUGES, f"missing: {sorted(COLLECTOR_GAUGES - present)}"


# Alert rules


def load_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules = []
    for group in document["groups"]:
        assert group["name"] and group["rules"], group
        rules.extend(group["rules"])
    return rules


def test_every_alert_rule_is_complete() -> None:
    rules = load_rules()
    names = [rule.get("alert") for rule in rules]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules:
        name = rule.get("alert")
        assert name and re.fullmatch(r"UltraChat[A-Za-z0-9]+", name), rule
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for"))), f"{name}: for"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_the_alerts_cover_the_plan_and_operations() -> None:
    rules = {rule["alert"]: rule for rule in load_rules()}
    assert {rule["labels"].get("kpi") for rule in rules.values()} >= KPIS
    latency = rules["UltraChatApiLatencyP99High"]
    assert "histogram_quantile(0.99" in latency["expr"] and "> 0.1" in latency["expr"]
    assert latency["for"] == "5m"
    errors = rules["UltraChatErrorRateHigh"]
    assert "> 0.0001" in errors["expr"] and errors["for"] == "5m"
    cache = rules["UltraChatCacheHitRatioLow"]
    assert "< 0.9" in cache["expr"] and cache["for"] == "15m"
    assert rules["UltraChatInstanceDown"]["for"] == rules["UltraChatAbsent"]["for"] == "2m"
    watched = " ".join(rule["expr"] for rule in rules.values())
    for series in (
        "ultrachat_decrypt_failures_total",
        "ultrachat_audit_append_failures_total",
        "ultrachat_group_commit_failed_batches_total",
        "ultrachat_bus_up",
        "ultrachat_db_replica_lag_seconds",
        "ultrachat_ws_connections",
        "ultrachat_send_refusal_ratio",
    ):
        assert series in watched, series


def test_alert_rules_name_only_exported_series(exported: dict[str, set[str]]) -> None:
    for rule in load_rules():
        assert_exported(rule["alert"], rule["expr"], exported)


# The dashboard


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel but rows (rows only group; a collapsed row holds its panels)."""
    panels = []
    for panel in load_dashboard()["panels"]:
        if panel["type"] == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def test_the_dashboard_is_well_formed() -> None:
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    panels = dashboard_panels()
    assert len(panels) >= 20
    for panel in panels:
        assert panel.get("title"), panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel.get("targets"), f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]


def test_the_dashboard_shows_what_was_asked() -> None:
    queries = " ".join(t["expr"] for p in dashboard_panels() for t in p["targets"])
    for series in (
        "ultrachat_ws_connections",
        "ultrachat_channel_events_committed_total",
        "ultrachat_ws_deliveries_total",
        "ultrachat_http_request_duration_seconds_bucket",
        "ultrachat_http_request_duration_seconds_count",
        "ultrachat_cache_requests_total",
        "ultrachat_process_cpu_percent",
        "ultrachat_host_memory_used_bytes",
        "ultrachat_active_users",
        "ultrachat_bus_lag_seconds",
        "ultrachat_pool_waiting",
        "ultrachat_active_subscriptions",
        "ultrachat_mrr",
        "ultrachat_churn_ratio",
    ):
        assert series in queries, series
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (route, le)" in queries, quantile


def test_dashboard_queries_name_only_exported_series(exported: dict[str, set[str]]) -> None:
    for panel in dashboard_panels():
        for target in panel["targets"]:
            assert_exported(panel["title"], target["expr"], exported)


# promtool


def _extract_promtool(into: Path) -> Path | None:
    """promtool from Debian's prometheus package, unpacked without installing anything."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return None
    as_root = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory() as work:
        download = ["apt-get", *as_root, "download", "prometheus"]
        try:
            fetched = subprocess.run(download, cwd=work, capture_output=True, timeout=180)
            if fetched.returncode != 0 and os.geteuid() == 0:  # no package lists yet
                subprocess.run(["apt-get", "update"], capture_output=True, timeout=180)
                fetched = subprocess.run(download, cwd=work, capture_output=True, timeout=180)
            debs = list(Path(work).glob("prometheus_*.deb"))
            if fetched.returncode != 0 or not debs:
                return None
            # Stops reading at promtool: dpkg-deb then ends on a closed pipe, quietly.
            unpack = subprocess.Popen(
                ["dpkg-deb", "--fsys-tarfile", str(debs[0])],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            assert unpack.stdout is not None
            with unpack, tarfile.open(fileobj=unpack.stdout, mode="r|") as archive:
                for member in archive:
                    if member.name == "./usr/bin/promtool" and member.isfile():
                        source = archive.extractfile(member)
                        assert source is not None
                        partial = into / f"promtool.{os.getpid()}"
                        partial.write_bytes(source.read())
                        partial.chmod(0o755)
                        partial.replace(into / "promtool")  # atomic: runs may race
                        break
        except (OSError, subprocess.SubprocessError, tarfile.TarError):
            return None
    found = into / "promtool"
    return found if found.exists() else None


@pytest.fixture(scope="session")
def promtool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    on_path = shutil.which("promtool")
    if on_path:
        return on_path
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("promtool") if cache is not None else tmp_path_factory.mktemp("pt")
    cached = folder / "promtool"
    if cached.exists() or _extract_promtool(folder):
        return str(cached)
    pytest.skip("promtool is not on PATH and could not be taken from Debian's package")


def run_promtool(promtool: str, *args: str) -> None:
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", str(ALERTS))


def test_promtool_runs_the_rule_unit_tests(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", str(ALERTS_TEST))


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    """Each panel query, its Grafana variables filled in, as a recording rule."""
    values = {"$__rate_interval": "5m", "$__range": "1h", "$instance": ".*", "$route": ".*"}
    rules = []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in values.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            rules.append(
                {"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr}
            )
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool(promtool, "check", "rules", str(path))
