#!/usr/bin/env bash
# `make run-observed`: chatworks with traces on, and Debian's Prometheus scraping it with the
# alert rules of deploy/prometheus loaded. Ctrl-C stops both.
#
# Traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set (Jaeger, Tempo, Phoenix, a collector),
# else to the console (one JSON object per finished span, on stderr/stdout of the server).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
PROM_PORT="${PROM_PORT:-9090}"
command -v prometheus >/dev/null 2>&1 || bash scripts/system-deps.sh

work="$(mktemp -d)"
prom_pid=""
trap 'kill "$prom_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
# The shipped config, pointed at this service and this copy of the rules.
sed -e "s/127.0.0.1:8000/127.0.0.1:${PORT}/" deploy/prometheus/prometheus.yml > "$work/prometheus.yml"
cp deploy/prometheus/rules.yml "$work/rules.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:${PROM_PORT}" --log.level=warn &
prom_pid=$!
echo "Prometheus: http://127.0.0.1:${PROM_PORT} (alerts: /alerts); chatworks: http://127.0.0.1:${PORT}"

if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ] && [ -z "${OTEL_TRACES_EXPORTER:-}" ]; then
  export OTEL_TRACES_EXPORTER=console
fi
export OTEL_SERVICE_NAME="${OTEL_SERVICE_NAME:-chatworks}"
CHATWORKS_PORT="$PORT" make --no-print-directory run  # the README's first command, traced
