#!/usr/bin/env bash
# Benchmark the auth hot paths on ONE uvicorn worker, with wrk on the same machine.
#
#   bench/auth_bench.sh sqlite            # embedded default: SQLite file, in-process cache
#   bench/auth_bench.sh postgres          # PostgreSQL + Redis on 127.0.0.1
#   WHAT=me PROFILE=1 bench/auth_bench.sh sqlite   # also profile /users/me with py-spy
#
# Knobs (environment): WHAT=me|login|all (all), DURATION=20s, CONNECTIONS="16 64" (one set
# of runs per value), THREADS=1, LOGIN_CONNECTIONS=8, REPEAT=3, PORT=8799, PROFILE=0,
# OUT=/tmp/ultrachat-bench-<time>, QUIET_WAIT=120 (seconds to wait, before each run, for the
# machine to be at least 85% idle; the run starts anyway after that and the log says so).
# Needs: wrk (apt-get install -y wrk), curl, uv (the Makefile's .tools/bin/uv, else uv on
# PATH); PostgreSQL (trust auth) and Redis on 127.0.0.1 for `postgres`. The server runs with a fresh database of its own, which is removed afterwards.
#
# The server gets ULTRACHAT_RATE_LIMIT_API_MAX=0 (one user would otherwise hit the per-user
# API limit) and very high auth/account limits (the login run is one user from one IP).
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=${1:-sqlite}
WHAT=${WHAT:-all}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-16 64}
LOGIN_CONNECTIONS=${LOGIN_CONNECTIONS:-8}
THREADS=${THREADS:-1}
REPEAT=${REPEAT:-3}
PORT=${PORT:-8799}
PROFILE=${PROFILE:-0}
QUIET_WAIT=${QUIET_WAIT:-120}
OUT=${OUT:-/tmp/ultrachat-bench-$(date +%Y%m%d-%H%M%S)}
PG_ADMIN=${PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/postgres}
REDIS=${REDIS:-redis://127.0.0.1:6379/0}
BASE="http://127.0.0.1:${PORT}"
if [[ -x .tools/bin/uv ]]; then UV=.tools/bin/uv; else UV=uv; fi
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=""

export ULTRACHAT_PORT=$PORT
export ULTRACHAT_LOG_LEVEL=warning
export ULTRACHAT_RATE_LIMIT_API_MAX=0
export ULTRACHAT_RATE_LIMIT_AUTH_MAX=1000000000
export ULTRACHAT_RATE_LIMIT_ACCOUNT_MAX=1000000000
export BENCH_USER="bench_$RANDOM"
export BENCH_PASSWORD="bench-password-$RANDOM-$RANDOM"

case "$BACKEND" in
sqlite)
    export ULTRACHAT_DATA_DIR="$WORK/var"
    ;;
postgres)
    DB="ultrachat_bench_$$"
    export ULTRACHAT_DATABASE_URL="${PG_ADMIN%/*}/$DB"
    ULTRACHAT_DATABASE_URL=${ULTRACHAT_DATABASE_URL/postgresql:/postgresql+asyncpg:}
    export ULTRACHAT_REDIS_URL=$REDIS
    export ULTRACHAT_REDIS_KEY_PREFIX="ucauthbench:$$:"
    psql -q "$PG_ADMIN" -c "CREATE DATABASE $DB" >/dev/null
    ;;
*)
    echo "usage: $0 sqlite|postgres" >&2
    exit 2
    ;;
esac

cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $BACKEND == postgres ]]; then
        psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB" >/dev/null || true
        redis-cli -u "$REDIS" --scan --pattern "ucauthbench:$$:*" | xargs -r redis-cli -u "$REDIS" del >/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Percent of the machine's CPU time idle over the next second (all cores).
idle_percent() {
    python3 - <<'PY'
import time
def read():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)
i0, t0 = read(); time.sleep(1); i1, t1 = read()
print(round(100 * (i1 - i0) / max(1, t1 - t0)))
PY
}

# Wait (up to QUIET_WAIT s) for other work to calm down, then log what else is running.
machine_state() {
    local waited=0 idle
    idle=$(idle_percent)
    while ((idle < 85 && waited < QUIET_WAIT)); do
        sleep 4
        waited=$((waited + 5))
        idle=$(idle_percent)
    done
    echo "--- $(date -Is) idle before run: ${idle}% (waited ${waited}s);$(uptime | sed 's/.*load average/ load average/')"
    # A fixed pure-Python loop: shows when the (virtual) CPU itself was slower than usual.
    echo "    cpu reference: $(python3 -m timeit -n 20 -r 5 'sum(i * i for i in range(100000))' | sed 's/.*: //') (lower is faster)"
    top -bn1 -o %CPU | sed -n '8,11p' | awk '$9 > 5 {print "    busy:", $1, $9 "%", $12}'
}

"$UV" sync --frozen --quiet
"$UV" run --frozen ultrachat migrate
# The server itself (not a `uv run` wrapper) so that $SERVER_PID is the process to profile.
.venv/bin/python -m ultrachat serve --port "$PORT" >"$OUT/server-$BACKEND.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    curl -fs "$BASE/healthz" >/dev/null && break
    sleep 0.1
done

# CPU seconds (user+system, all threads) the server has used so far.
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$SERVER_PID/stat"; }
cpu_during() { # cpu_during COMMAND...: run wrk, then print the server's CPU use meanwhile
    local c0 t0 c1 t1 output
    c0=$(server_cpu) t0=$(date +%s.%N)
    output=$("$@")
    c1=$(server_cpu) t1=$(date +%s.%N)
    echo "$output"
    # CPU time per request barely depends on other work on the machine, unlike req/s.
    python3 -c "
import re, sys
c0, c1, t0, t1 = map(float, sys.argv[1:5])
n = int(re.search(r'(\d+) requests in', sys.argv[5]).group(1))
print(f'server CPU: {100 * (c1 - c0) / (t1 - t0):.0f}% of one core, {1e6 * (c1 - c0) / max(n, 1):.0f} us per request')
" "$c0" "$c1" "$t0" "$t1" "$output"
}

json() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
creds="{\"username\":\"$BENCH_USER\",\"password\":\"$BENCH_PASSWORD\"}"
curl -fs -H 'Content-Type: application/json' -d "$creds" "$BASE/api/v1/auth/register" >/dev/null
TOKEN=$(curl -fs -H 'Content-Type: application/json' -d "$creds" "$BASE/api/v1/auth/login" |
    json access_token)
curl -fs -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/users/me" >/dev/null

{
    echo "# backend=$BACKEND server_pid=$SERVER_PID commit=$(git rev-parse --short HEAD)$(git diff --quiet -- src || echo '+dirty')"
    echo "# $(nproc) cores; $(lscpu | sed -n 's/^Model name: *//p'); $(free -g | awk '/Mem:/{print $2}') GiB;" \
        "$(.venv/bin/python --version); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
} | tee "$OUT/$BACKEND.txt"

me() { # me CONNECTIONS DURATION
    wrk -t"$THREADS" -c"$1" -d"$2" --latency \
        -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/users/me"
}

if [[ $WHAT == me || $WHAT == all ]]; then
    me 16 5s >/dev/null # warm-up, discarded
    for c in $CONNECTIONS; do
        for i in $(seq "$REPEAT"); do
            machine_state
            echo "=== GET /api/v1/users/me run $i: wrk -t$THREADS -c$c -d$DURATION --latency"
            cpu_during me "$c" "$DURATION"
        done 2>&1 | tee -a "$OUT/$BACKEND.txt"
    done
    if [[ $PROFILE == 1 ]]; then
        me 16 25s >/dev/null &
        WRK_PID=$!
        sleep 3
        "$UV" tool run py-spy record --pid "$SERVER_PID" --duration 15 --nonblocking --format raw \
            -o "$OUT/profile-$BACKEND.folded" >/dev/null
        wait "$WRK_PID"
        python3 bench/auth_profile.py "$OUT/profile-$BACKEND.folded" | tee "$OUT/profile-$BACKEND.txt"
    fi
fi

if [[ $WHAT == login || $WHAT == all ]]; then
    for i in $(seq "$REPEAT"); do
        machine_state
        echo "=== POST /api/v1/auth/login run $i: wrk -t$THREADS -c$LOGIN_CONNECTIONS -d$DURATION --latency -s bench/login.lua"
        cpu_during wrk -t"$THREADS" -c"$LOGIN_CONNECTIONS" -d"$DURATION" --latency \
            -s bench/login.lua "$BASE/api/v1/auth/login"
    done 2>&1 | tee -a "$OUT/$BACKEND.txt"
fi
echo "results in $OUT"
