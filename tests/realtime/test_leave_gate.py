"""The rule for a user's own leave in replayed or held-back events (realtime/feed.py)."""

from __future__ import annotations

from ultrachat.chat.events import Envelope
from ultrachat.realtime.feed import LeaveGate


def event(seq: int, kind: str = "message.created", subject: str = "") -> Envelope:
    return Envelope(seq, kind, subject, f"frame {seq}")


def admitted(gate: LeaveGate, events: list[Envelope]) -> list[str]:
    return [frame for e in events for frame in gate.admit(e)]


def test_a_final_leave_ends_delivery_after_its_own_frame() -> None:
    gate = LeaveGate("bob")
    sent = admitted(gate, [event(1), event(2, "member.left", "bob"), event(3), event(4)])
    assert sent == ["frame 1", "frame 2"]
    assert gate.left


def test_a_rejoin_releases_what_was_held_in_order() -> None:
    gate = LeaveGate("bob")
    events = [
        event(1),
        event(2, "member.left", "bob"),
        event(3),
        event(4, "member.joined", "bob"),
        event(5),
    ]
    assert admitted(gate, events) == [f"frame {i}" for i in range(1, 6)]
    assert not gate.left


def test_someone_elses_leave_and_join_change_nothing() -> None:
    gate = LeaveGate("bob")
    events = [event(1, "member.left", "ann"), event(2), event(3, "member.joined", "ann")]
    assert admitted(gate, events) == ["frame 1", "frame 2", "frame 3"]
    assert not gate.left
