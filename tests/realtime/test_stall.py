"""The stall rule gives up a peer whose socket took nothing while frames waited for it. Frames
queued while the session is still opening wait for ``ready``, not for the socket: a slow
open (a loaded node, a large resume) must not be taken for a stalled peer. It was, and the
client was cut off at its hello without a close frame (1006)."""

from __future__ import annotations

from typing import Any

from ultrachat.realtime.asgi import AsgiConnection
from ultrachat.realtime.edge import EdgeConnection


class Underlying:
    def __init__(self) -> None:
        self.buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Transport:
    """What EdgeConnection uses of picows' transport."""

    def __init__(self) -> None:
        self.underlying_transport = Underlying()
        self.sent: list[bytes] = []
        self.dropped = False
        self.is_disconnected = False
        self.pings = 0

    def send(self, _kind: Any, payload: bytes) -> None:
        self.sent.append(payload)

    def send_ping(self) -> None:
        self.pings += 1

    def disconnect(self, graceful: bool = True) -> None:
        self.dropped = True


def sweeps(connection: EdgeConnection, times: int) -> None:
    for _ in range(times):
        connection.sweep()
        connection.heard += 1  # the peer answers every ping: only the stall rule is tested


def test_frames_waiting_for_ready_are_no_stall_and_a_live_peer_that_takes_nothing_is() -> None:
    transport = Transport()
    connection = EdgeConnection("c1", transport, "u1", "s1", max_queue=100)  # type: ignore[arg-type]
    connection.push(b'{"type":"event"}')  # a message in one of its channels, mid-open
    sweeps(connection, 5)  # five ping intervals of opening
    assert not transport.dropped and not connection.abandoned
    connection.start()  # ready (queued first in the real session), then what waited
    assert transport.sent == [b'{"type":"event"}']

    # Live, its socket full: frames wait and nothing gets out for a whole interval.
    connection.paused = True
    connection.push(b'{"type":"event","seq":2}')
    sweeps(connection, 2)
    assert transport.dropped and connection.abandoned


def test_the_asgi_connection_is_not_busy_before_it_starts() -> None:
    connection = AsgiConnection("c2", None, "u2", "s1", max_queue=100)  # type: ignore[arg-type]
    connection.push('{"type":"event"}')  # queued: the session has not started
    assert not connection.stalled() and not connection.stalled()
