# shellcheck shell=bash
# Sourced by scripts/deploy.sh and scripts/rollback.sh: where a release goes, and the parts of
# the two command lines that are the same.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SERVICE="${SERVICE:-chatworks-dev}"
REGION="${REGION:-europe-west1}"

# The calling script's header comment is its usage.
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" >&2; exit 2; }

overlay_dir() { echo "deploy/k8s/overlays/${1:?OVERLAY (dev or prod)}"; }
namespace_of() { sed -n 's/^namespace: //p' "$(overlay_dir "$1")/kustomization.yaml"; }

# `SCRIPT cloudrun ARGS...` calls the script's function cloudrun, `SCRIPT k8s ARGS...` its k8s.
dispatch() {
  case "${1:-}" in
    cloudrun | k8s) "$@" ;;
    *) usage ;;
  esac
}
