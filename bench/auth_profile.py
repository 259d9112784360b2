"""Where the time goes in a py-spy ``--format raw`` profile of the server, by request stage.

Usage: python3 bench/auth_profile.py profile.folded   (auth_bench.sh PROFILE=1 runs it)

Each sample is put in the first bucket found walking its stack from the leaf towards the
root, so time inside a library is charged to the piece of our code that called it (Redis
client time inside the revocation check counts as the revocation check). Percentages are of
the event-loop thread's busy samples; other threads (aiosqlite's, the thread pools) are
listed apart because with one event loop they are not what bounds throughput.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# (bucket, pattern on one frame), most specific first; frames look like "func (path:line)".
BUCKETS: list[tuple[str, str]] = [
    ("access token verification (PyJWT, RSA)", r"^(verify_access_token|AccessTokenVerifier)"),
    ("revocation check (cache lookup)", r"^RevocationList\.is_revoked"),
    ("per-user API limit", r"^AuthService\.enforce_api_limit"),
    ("user lookup (SQLAlchemy + driver)", r"^AuthService\.(get_user|get_profile)"),
    ("response building (pydantic, JSON)", r"^(serialize_response|_prepare_response_content)"),
    ("response building (pydantic, JSON)", r"^(JSONResponse|Response)\.(render|__init__)"),
    ("metrics (prometheus_client)", r"\(prometheus_client/"),
    ("edge middleware (request id, body limit)", r"^EdgeMiddleware\."),
    ("FastAPI dependency resolution", r"^solve_dependencies"),
    ("FastAPI/Starlette routing and middleware", r"\((fastapi|starlette)/"),
    ("uvicorn HTTP protocol (httptools)", r"\(uvicorn/protocols/"),
]
_COMPILED = [(name, re.compile(pattern)) for name, pattern in BUCKETS]


def bucket(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    return "event loop, asyncio and other"


def main(path: str) -> None:
    loop: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    others: Counter[str] = Counter()
    with open(path, encoding="utf-8") as profile:
        lines = profile.read().splitlines()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        n = int(count)
        if "Thread._bootstrap" in frames[0]:
            # Idle waits on a queue or condition are not work.
            if not re.search(r"(SimpleQueue|Queue\.get|Condition\.wait|core\.py:59\))", stack):
                # Name the thread by its entry point, just under threading's own frames.
                entry = next((f for f in frames if "threading.py" not in f), frames[-1])
                others[re.sub(r" \(.*", "", entry)] += n
            continue
        loop[bucket(frames)] += n
        leaf[re.sub(r":\d+\)$", ")", frames[-1])] += n
    total = sum(loop.values()) or 1
    print(f"event-loop thread: {total} busy samples")
    for name, n in loop.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("hottest functions (self time, event-loop thread):")
    for name, n in leaf.most_common(12):
        print(f"  {100 * n / total:5.1f}%  {name}")
    if others:
        print("other threads, busy samples (relative to the event-loop thread's):")
        for name, n in others.most_common(5):
            print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
