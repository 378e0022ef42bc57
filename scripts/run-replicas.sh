#!/usr/bin/env bash
# `make run-replicas`: N `chatworks serve` replicas behind HAProxy, sharing one Postgres and one
# Redis, everything on 127.0.0.1 (docs/operations/deploy.md, "Replicas behind HAProxy").
# Ctrl-C stops all of it.
#
#   REPLICAS=2         how many replicas (1-8), on ports PORT+1 .. PORT+N
#   PORT=8000          where HAProxy listens: the address `make run` uses
#   REDIS_PORT=6380    the local redis-server started when CHATWORKS_REDIS_URL is unset
#   CHATWORKS_DATABASE_URL / CHATWORKS_REDIS_URL   use these instead of starting local ones
#   OBSERVED=1         also Prometheus scraping every replica, Alertmanager and the alert
#                      receiver, as `make run-observed` (scripts/monitoring.sh): a replica
#                      killed pages ChatworksDown to $ALERT_LOG (data/alerts.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
OBSERVED="${OBSERVED:-}"
source scripts/monitoring.sh
REPLICAS="${REPLICAS:-2}"
REDIS_PORT="${REDIS_PORT:-6380}"
BIN=.venv/bin
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"  # sbin: not on every user's PATH
if [ ! -x "$HAPROXY" ] || ! command -v redis-server >/dev/null 2>&1; then
  bash scripts/system-deps.sh  # Debian's haproxy and redis-server (and the tests' packages)
  HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
fi
if [ "$REPLICAS" -lt 1 ] || [ "$REPLICAS" -gt 8 ]; then
  echo "REPLICAS must be 1-8 (deploy/haproxy/haproxy.cfg names 8 servers)" >&2
  exit 2
fi

work="$(mktemp -d)"
pids=()     # HAProxy and the replicas
db_pid=""   # the embedded Postgres' holder
stop_all() {
  # The balancer and the replicas first (they drain their streams), then what they use.
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  [ -n "$db_pid" ] && kill "$db_pid" 2>/dev/null && wait "$db_pid" 2>/dev/null
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null
  rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

if [ -z "${CHATWORKS_DATABASE_URL:-}" ]; then
  # Kept in ./data between runs, like `make run`'s SQLite file.
  $BIN/python scripts/embedded-postgres.py data/replicas-postgres "$work/database-url" &
  db_pid=$!
  until [ -s "$work/database-url" ]; do
    kill -0 "$db_pid" 2>/dev/null || { echo "Postgres did not start" >&2; exit 1; }
    sleep 0.5
  done
  CHATWORKS_DATABASE_URL="$(cat "$work/database-url")"
fi
if [ -z "${CHATWORKS_REDIS_URL:-}" ]; then
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize yes --pidfile "$work/redis.pid" --dir "$work" --loglevel warning
  CHATWORKS_REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
fi
export CHATWORKS_DATABASE_URL CHATWORKS_REDIS_URL

# The demo collection of `make run`, now in the shared database (idempotent).
$BIN/chatworks ingest docs README.md --collection chatworks-docs --prune

# Every replica keeps its scratch (the converted model) in ./data, as `make run` does.
export CHATWORKS_LB_BIND="127.0.0.1:${PORT}"
for ((i = 1; i <= REPLICAS; i++)); do
  port=$((PORT + i))
  CHATWORKS_PORT="$port" $BIN/chatworks serve > "data/replica-$i.log" 2>&1 &
  pids+=($!)
  export "CHATWORKS_REPLICA_${i}=127.0.0.1:${port}"
  echo "replica $i: http://127.0.0.1:${port} (pid $!, log: data/replica-$i.log)"
done

if [ -n "$OBSERVED" ]; then
  replicas=()
  for ((i = 1; i <= REPLICAS; i++)); do replicas+=("127.0.0.1:$((PORT + i))"); done
  start_monitoring "$work" "${replicas[@]}"
fi
echo "chatworks: http://127.0.0.1:${PORT} (HAProxy; a replica gets traffic once /readyz says ready)"
# In the foreground, logging each request with the replica that served it.
"$HAPROXY" -W -db -f deploy/haproxy/haproxy.cfg &
pids+=($!)
wait "${pids[-1]}"
