"""``ultrachat loadtest``: a load generator for UltraChat, on asyncio and WebSockets.

A coordinator process sets up users and channels over the REST API (or reuses a saved
run), spawns worker processes that each hold a share of the WebSocket connections, drives
the send schedule and the REST mix, and checks that every acked message reached every
connection of every member of its channel exactly once. docs/benchmarks.md ("Load testing")
describes the tool and its decisions.

Modules: ``scenario`` (what to run), ``setup`` (users, channels, tokens, the state file),
``nodes`` (local server nodes for fault mode), ``worker`` (one process's connections),
``coordinator`` (the processes, the phases, faults), ``display`` (the live view),
``histogram`` (mergeable latency histograms), ``metrics`` (the server's /metrics),
``report`` (the checks and the report) and ``kpi`` (the plan's success metrics).
"""
