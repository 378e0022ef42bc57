#!/usr/bin/env bash
# `make run-observed`: chatworks with traces on; Debian's Prometheus scraping it with the alert
# rules of deploy/prometheus loaded; Alertmanager (deploy/alertmanager) routing what fires to
# `chatworks alerts receive`, which prints each alert, firing then resolved, as a JSON line to
# $ALERT_LOG (scripts/monitoring.sh). Ctrl-C stops them all.
#
# Traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set (Jaeger, Tempo, Phoenix, a collector),
# else to the console (one JSON object per finished span, on stderr/stdout of the server).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
source scripts/monitoring.sh

work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
start_monitoring "$work" "127.0.0.1:${PORT}"
echo "chatworks: http://127.0.0.1:${PORT}"

if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ] && [ -z "${OTEL_TRACES_EXPORTER:-}" ]; then
  export OTEL_TRACES_EXPORTER=console
fi
export OTEL_SERVICE_NAME="${OTEL_SERVICE_NAME:-chatworks}"
CHATWORKS_PORT="$PORT" make --no-print-directory run  # the README's first command, traced
