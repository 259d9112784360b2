"""The kernel's floor for fan-out on this machine: CPU per ``send()`` of one small frame to
one of many loopback TCP sockets, with a reader process draining them.

Every delivery the real-time edge makes ends in one such ``send()`` (one frame per socket;
nothing to coalesce at a few messages per second per socket), so this is the part of the
per-delivery cost no server code can remove. It varies a lot between machines (kernel
mitigations, virtualisation): measure it before reading the fan-out figures.

    uv run python bench/send_floor.py --sockets 1000 --rounds 200 --size 300
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import selectors
import socket
import time


def drain(port: int, sockets: int, ready: multiprocessing.synchronize.Event) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=sockets)
    selector = selectors.DefaultSelector()
    accepted = 0
    ready.set()
    while accepted < sockets:
        conn, _ = listener.accept()
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
        accepted += 1
    while selector.get_map():
        for key, _ in selector.select(1.0):
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            if not conn.recv(1 << 16):
                selector.unregister(conn)
                conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--size", type=int, default=300, help="bytes per frame")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = multiprocessing.Event()
    reader = multiprocessing.Process(target=drain, args=(port, args.sockets, ready))
    reader.start()
    ready.wait()
    conns = []
    for _ in range(args.sockets):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(conn)
    frame = b"x" * args.size
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(args.rounds):
        for conn in conns:
            conn.send(frame)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for conn in conns:
        conn.close()
    reader.join()
    sends = args.sockets * args.rounds
    times = os.times()
    print(
        json.dumps(
            {
                "sends": sends,
                "frame_bytes": args.size,
                "cpu_us_per_send": round(cpu / sends * 1e6, 2),
                "wall_us_per_send": round(wall / sends * 1e6, 2),
                "sender_system_share": round(times.system / (times.user + times.system), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
