"""Scenario parsing: defaults, the TOML file, flag overrides, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import ultrachat
from ultrachat.loadtest.scenario import Members, Scenario, ScenarioError, Shape, build, load


def test_flags_override_the_file_which_overrides_defaults(tmp_path: Path) -> None:
    file = tmp_path / "plan.toml"
    file.write_text(
        'users = 500\nconnections-per-user = 2\nmembers = "loguniform:2:500"\nrate = 278\n'
        'shape = "ramp:30"\nrest_mix = { history = 5, me = 1 }\n'
        'source_addresses = "127.0.0.1-127.0.0.4"\nurls = ["http://a:1", "http://b:2/"]\n'
    )
    s = load(file, {"rate": "100", "duration": "2m", "users": None})
    assert s.users == 500 and s.connections == 1000
    assert s.rate == 100.0 and s.duration == 120.0
    assert s.members == Members("loguniform", 2, 500)
    assert s.shape == Shape("ramp", 30.0)
    assert s.rest_mix == {"history": 5.0, "me": 1.0}
    assert s.source_addresses == ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
    assert s.urls == ("http://a:1", "http://b:2")
    assert s.channels == Scenario().channels  # untouched default


def test_retrying_refused_sends_is_on_unless_turned_off(tmp_path: Path) -> None:
    assert Scenario().retry_refused and build({}).retry_refused
    file = tmp_path / "plan.toml"
    file.write_text("retry-refused = false\n")
    assert not load(file, {}).retry_refused
    assert load(file, {"retry_refused": True}).retry_refused  # the flag wins
    assert not build({"retry_refused": "no"}).retry_refused


def test_a_scenario_table_is_accepted(tmp_path: Path) -> None:
    file = tmp_path / "plan.toml"
    file.write_text("[scenario]\nusers = 7\n")
    assert load(file, {}).users == 7


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"users": "many"}, "users: must be an integer, not 'many'"),
        ({"users": "0"}, "users: must be >= 1, not 0"),
        ({"members": "0:3"}, "members: '0:3': needs 1 <= A <= B"),
        ({"members": "5:2"}, "members: '5:2': needs 1 <= A <= B"),
        ({"members": "zipf:2:9"}, "members: 'zipf:2:9' is not N"),
        ({"members": "20", "users": "10"}, "members: channels of 20+ members need that many"),
        ({"shape": "sine"}, "shape: 'sine' is not steady"),
        ({"shape": "burst:1:5"}, "shape: 'burst:1:5': the burst is longer than its period"),
        ({"duration": "soon"}, "duration: must be seconds"),
        ({"duration": "0"}, "duration: must be > 0"),
        ({"rate": "-1"}, "rate: must be >= 0"),
        ({"rest_mix": "history=5,search=1"}, "rest-mix: unknown route 'search'"),
        ({"rest_mix": "history"}, "rest-mix: 'history' is not ROUTE=REQUESTS_PER_SECOND"),
        ({"source_addresses": "127.0.0.9-127.0.0.1"}, "the range runs backwards"),
        ({"source_addresses": "localhost"}, "'localhost' is not an IPv4 address"),
        ({"urls": "ftp://x"}, "urls: 'ftp://x' is not an http(s)://host[:port] URL"),
        ({"faults": "kill:0@1"}, "needs --spawn-nodes"),
        ({"faults": "kill:2@1", "spawn_nodes": "2"}, "fault: node 2 does not exist (0..1)"),
        ({"faults": "kill:0@99", "spawn_nodes": "2"}, "comes after the run ends"),
        ({"faults": "kill:0@1", "spawn_nodes": "1"}, "needs --spawn-nodes 2 or more"),
        ({"faults": "stop:0@1", "spawn_nodes": "2"}, "'stop:0@1' is not kill:NODE@SECONDS"),
        ({"retry_refused": "maybe"}, "retry-refused: must be true or false, not 'maybe'"),
        ({"retry_refused": 1}, "retry-refused: must be true or false, not 1"),
    ],
)
def test_bad_values_are_one_line_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        build(values)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_scenario_file_errors_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "plan.toml"
    file.write_text("users = 5\nspeed = 3\n")
    with pytest.raises(ScenarioError, match=r"plan\.toml: unknown key 'speed' \(known: urls"):
        load(file, {})
    file.write_text("users = \n")
    with pytest.raises(ScenarioError, match=r"plan\.toml: "):
        load(file, {})
    with pytest.raises(ScenarioError, match=r"missing\.toml"):
        load(tmp_path / "missing.toml", {})


def test_shapes_send_the_planned_number_of_messages() -> None:
    assert Shape("steady").total(10, 60) == 600
    assert Shape("ramp", 20).total(10, 60) == pytest.approx(10 * 20 / 2 + 10 * 40)
    assert Shape("ramp").sends_by(15, 10, 60) == pytest.approx(10 * 15 * 15 / 60)
    burst = Shape("burst", None, 10, 1)
    assert burst.sends_by(1, 5, 60) == pytest.approx(50)  # the period's 50 in its first second
    assert burst.sends_by(9.9, 5, 60) == pytest.approx(50)
    assert burst.total(5, 60) == pytest.approx(300)  # the mean rate holds


def test_members_stay_within_their_range() -> None:
    import random

    rng = random.Random(3)
    for spec in (Members("uniform", 2, 9), Members("loguniform", 2, 500)):
        counts = [spec.sample(rng, 1000) for _ in range(2000)]
        assert min(counts) >= spec.low and max(counts) <= spec.high
    skewed = [Members("loguniform", 2, 500).sample(rng, 1000) for _ in range(2000)]
    assert sorted(skewed)[1000] < 50  # most channels are small
    assert Members("fixed", 50, 50).sample(rng, 10) == 10  # never more than the users


def test_the_cli_reports_a_bad_flag_in_one_line(tmp_path: Path) -> None:
    result = ultrachat(tmp_path, "loadtest", "--members", "0:3")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: members: '0:3': needs 1 <= A <= B"
