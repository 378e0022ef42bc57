#!/usr/bin/env bash
# `make run-observed`: chatworks with traces on; Debian's Prometheus scraping it with the alert
# rules of deploy/prometheus loaded; Alertmanager (deploy/alertmanager) routing what fires to
# `chatworks alerts receive`, which prints each alert, firing then resolved, as a JSON line to
# $ALERT_LOG. Ctrl-C stops them all.
#
# Traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set (Jaeger, Tempo, Phoenix, a collector),
# else to the console (one JSON object per finished span, on stderr/stdout of the server).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
PROM_PORT="${PROM_PORT:-9090}"
AM_PORT="${AM_PORT:-9093}"
RECEIVER_PORT="${RECEIVER_PORT:-9095}"
ALERT_LOG="${ALERT_LOG:-data/alerts.jsonl}"
bash scripts/system-deps.sh  # Prometheus and Alertmanager, if missing
# Debian names the binary prometheus-alertmanager; upstream's release calls it alertmanager.
alertmanager="$(command -v prometheus-alertmanager || command -v alertmanager)"

work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
# The shipped configs, pointed at this service, this Alertmanager and this receiver.
sed -e "s/127.0.0.1:8000/127.0.0.1:${PORT}/" -e "s/127.0.0.1:9093/127.0.0.1:${AM_PORT}/" \
  deploy/prometheus/prometheus.yml > "$work/prometheus.yml"
cp deploy/prometheus/rules.yml "$work/rules.yml"
sed -e "s/127.0.0.1:9095/127.0.0.1:${RECEIVER_PORT}/" deploy/alertmanager/alertmanager.yml \
  > "$work/alertmanager.yml"

mkdir -p "$(dirname "$ALERT_LOG")"
.venv/bin/chatworks alerts receive --port "$RECEIVER_PORT" >> "$ALERT_LOG" &
pids+=($!)
# --cluster.listen-address=: one Alertmanager, no gossip port opened.
"$alertmanager" --config.file="$work/alertmanager.yml" --storage.path="$work/alertmanager" \
  --web.listen-address="127.0.0.1:${AM_PORT}" --cluster.listen-address= --log.level=warn &
pids+=($!)
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:${PROM_PORT}" --log.level=warn &
pids+=($!)
echo "Prometheus: http://127.0.0.1:${PROM_PORT} (alerts: /alerts); Alertmanager:" \
  "http://127.0.0.1:${AM_PORT}; alerts received: ${ALERT_LOG}; chatworks: http://127.0.0.1:${PORT}"

if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ] && [ -z "${OTEL_TRACES_EXPORTER:-}" ]; then
  export OTEL_TRACES_EXPORTER=console
fi
export OTEL_SERVICE_NAME="${OTEL_SERVICE_NAME:-chatworks}"
CHATWORKS_PORT="$PORT" make --no-print-directory run  # the README's first command, traced
