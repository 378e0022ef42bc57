# shellcheck shell=bash
# Sourced by scripts/run-observed.sh and scripts/run-replicas.sh (OBSERVED=1). `start_monitoring
# WORKDIR ADDRESS...` starts Debian's Prometheus scraping chatworks at each ADDRESS with the
# alert rules of deploy/prometheus, Alertmanager (deploy/alertmanager) routing what fires to
# `chatworks alerts receive`, which appends each alert, firing then resolved, as a JSON line to
# $ALERT_LOG. The processes are appended to the caller's `pids` array; their files go in WORKDIR.
PROM_PORT="${PROM_PORT:-9090}"
AM_PORT="${AM_PORT:-9093}"
RECEIVER_PORT="${RECEIVER_PORT:-9095}"
ALERT_LOG="${ALERT_LOG:-data/alerts.jsonl}"

start_monitoring() {
  local work="$1"
  shift
  bash scripts/system-deps.sh # Prometheus and Alertmanager, if missing
  # Debian names the binary prometheus-alertmanager; upstream's release calls it alertmanager.
  local alertmanager targets
  alertmanager="$(command -v prometheus-alertmanager || command -v alertmanager)"
  targets="$(printf '"%s", ' "$@")"
  # The shipped configs, pointed at these services, this Alertmanager and this receiver.
  sed -e "s/\[\"127.0.0.1:8000\"\]/[${targets%, }]/" -e "s/127.0.0.1:9093/127.0.0.1:${AM_PORT}/" \
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
    "http://127.0.0.1:${AM_PORT}; alerts received: ${ALERT_LOG}"
}
