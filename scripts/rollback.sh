#!/usr/bin/env bash
# Goes back to the previous release in one command (docs/operations/runbooks/bad-deploy.md).
#
#   scripts/rollback.sh cloudrun [REVISION]   all traffic to REVISION, by default the revision
#                                             created before the newest one
#   scripts/rollback.sh k8s OVERLAY [N]       kubectl rollout undo (to revision N if given)
#
# Cloud Run: SERVICE and REGION as for scripts/deploy.sh. Migrations are not undone: so far they
# only add tables, columns and indexes, so the previous version runs on the newer schema (keep
# them additive: expand in one release, remove in a later one).

# shellcheck source=scripts/release-common.sh
source "$(dirname "$0")/release-common.sh"

cloudrun() {
  local revision="${1:-}"
  if [ -z "$revision" ]; then
    revision="$(gcloud run revisions list --service "$SERVICE" --region "$REGION" \
      --sort-by '~metadata.creationTimestamp' --format 'value(metadata.name)' --limit 2 | sed -n 2p)"
  fi
  [ -n "$revision" ] || { echo "no previous revision of $SERVICE" >&2; exit 1; }
  gcloud run services update-traffic "$SERVICE" --region "$REGION" --quiet \
    --to-revisions "${revision}=100"
  echo "all traffic on $revision; the canary tag, if any, stays for inspection"
}

k8s() {
  local namespace
  namespace="$(namespace_of "${1:-}")"
  kubectl -n "$namespace" rollout undo deployment/chatworks ${2:+--to-revision="$2"}
  kubectl -n "$namespace" rollout status deployment/chatworks --timeout=15m
}

dispatch "$@"
