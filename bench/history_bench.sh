#!/usr/bin/env bash
# History page (50 messages) latency with a warm cache, on ONE worker, wrk on the same machine.
#
#   bench/history_bench.sh sqlite     # embedded default
#   bench/history_bench.sh postgres   # PostgreSQL + Redis on 127.0.0.1
#   CONNECTIONS=4 bench/history_bench.sh sqlite   # fewer concurrent requests (default 16)
#
# Prints wrk's latency distribution for GET /api/v1/channels/{id}/messages?limit=50 (the
# newest page, what every client opens a channel with) and the cache counters it moved.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:-sqlite}
PORT=${PORT:-8797}
BASE="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
if [[ -x .tools/bin/uv ]]; then UV=.tools/bin/uv; else UV=uv; fi
export ULTRACHAT_PORT=$PORT ULTRACHAT_LOG_LEVEL=warning ULTRACHAT_RATE_LIMIT_API_MAX=0
export ULTRACHAT_DATA_DIR="$WORK/var"
if [[ $BACKEND == postgres ]]; then
    DB="ultrachat_hist_$$"
    psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" >/dev/null
    export ULTRACHAT_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/$DB"
    export ULTRACHAT_REDIS_URL=redis://127.0.0.1:6379/0 ULTRACHAT_REDIS_KEY_PREFIX="uchist:$$:"
fi
$UV run --frozen ultrachat migrate >/dev/null
$UV run --frozen ultrachat serve >"$WORK/server.log" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    if [[ $BACKEND == postgres ]]; then
        psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
        redis-cli --scan --pattern "uchist:$$:*" | xargs -r redis-cli del >/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
USER="hist_$RANDOM"; PASS="history-bench-$RANDOM-pass"
curl -sf -XPOST "$BASE/api/v1/auth/register" -H 'content-type: application/json' \
    -d "{\"username\":\"$USER\",\"password\":\"$PASS\"}" >/dev/null
TOKEN=$(curl -sf -XPOST "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"$USER\",\"password\":\"$PASS\"}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
AUTH="Authorization: Bearer $TOKEN"
CHANNEL=$(curl -sf -XPOST "$BASE/api/v1/channels" -H "$AUTH" -H 'content-type: application/json' \
    -d '{"name":"history","kind":"public"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
for i in $(seq 60); do
    curl -sf -XPOST "$BASE/api/v1/channels/$CHANNEL/messages" -H "$AUTH" \
        -H 'content-type: application/json' -d "{\"body\":\"message number $i with some text\"}" >/dev/null
done
URL="$BASE/api/v1/channels/$CHANNEL/messages?limit=50"
curl -sf "$URL" -H "$AUTH" >/dev/null   # warm the cache
before=$(curl -sf "$BASE/metrics" | grep 'ultrachat_cache_requests_total{resource="channel-history-head"' || true)
wrk -t1 -c"${CONNECTIONS:-16}" -d15s --latency -H "$AUTH" "$URL"
echo "cache before: $before"
echo "cache after:  $(curl -sf "$BASE/metrics" | grep 'ultrachat_cache_requests_total{resource="channel-history-head"')"
