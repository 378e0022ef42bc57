#!/usr/bin/env bash
# Releases an image (docs/operations/deploy.md, "Release, canary and rollback").
#
#   scripts/deploy.sh cloudrun IMAGE              all traffic to a new revision running IMAGE
#   scripts/deploy.sh cloudrun IMAGE --canary 10  a new revision tagged `canary` with 10% of traffic
#   scripts/deploy.sh cloudrun --promote          the canary revision takes all traffic
#   scripts/deploy.sh k8s OVERLAY [IMAGE]         migrate, then roll deploy/k8s/overlays/OVERLAY out
#
# Cloud Run: SERVICE (default chatworks-dev) and REGION (default europe-west1) in the
# environment, the project from gcloud's configuration. Kubernetes: the current kubectl context.
# IMAGE should name a digest (...@sha256:...) or an immutable tag, so a rollback is exact.

# shellcheck source=scripts/release-common.sh
source "$(dirname "$0")/release-common.sh"

cloudrun() {
  local run=(gcloud run --quiet --region "$REGION")
  if [ "${1:-}" = "--promote" ]; then
    "${run[@]}" services update-traffic "$SERVICE" --to-latest
    return
  fi
  local image="${1:?IMAGE}"
  if [ "${2:-}" = "--canary" ]; then
    local percent="${3:?PERCENT}"
    # --no-traffic: the new revision serves nobody until the split below gives it a share.
    "${run[@]}" deploy "$SERVICE" --image "$image" --no-traffic --tag canary
    "${run[@]}" services update-traffic "$SERVICE" --to-tags "canary=${percent}"
    echo "canary: ${percent}% of traffic; compare it on the dashboard (label service.version),"
    echo "then: scripts/deploy.sh cloudrun --promote   or   scripts/rollback.sh cloudrun"
    return
  fi
  "${run[@]}" deploy "$SERVICE" --image "$image"
}

k8s() {
  local overlay namespace rendered image="${2:-}"
  overlay="$(overlay_dir "${1:-}")"
  namespace="$(namespace_of "$1")"
  rendered="$(mktemp)"
  trap 'rm -f "$rendered"' RETURN
  kubectl kustomize "$overlay" > "$rendered"
  if [ -n "$image" ]; then
    # Every container in these manifests runs the chatworks image (server and migration Job).
    sed -i -E "s#^( +image: ).*#\1${image}#" "$rendered"
  fi
  # A Job's pod template cannot change: the previous migration Job goes before the new one.
  kubectl -n "$namespace" delete job chatworks-migrate --ignore-not-found
  kubectl apply -f "$rendered"
  kubectl -n "$namespace" wait --for=condition=complete job/chatworks-migrate --timeout=10m
  # Pods are replaced one at a time and only once the new one is ready (maxUnavailable: 0).
  kubectl -n "$namespace" rollout status deployment/chatworks --timeout=15m
}

dispatch "$@"
