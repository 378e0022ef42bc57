#!/usr/bin/env bash
# `make deploy-check`: every deployment artifact through the validators that run offline (no
# Docker engine, cluster or cloud). The tools come from .venv-deploy (deploy/requirements-tools.txt).
# Not done here, for want of a registry: `terraform validate` and `plan` (they download the
# providers), building the image, applying the manifests.
set -euo pipefail
cd "$(dirname "$0")/.."
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "hadolint: deploy/Dockerfile"
hadolint deploy/Dockerfile

step "shellcheck: scripts"
shellcheck -x scripts/*.sh .ci/run

step "kubectl kustomize + kubernetes-validate --strict: each overlay"
for overlay in deploy/k8s/overlays/*/; do
  name="$(basename "$overlay")"
  kubectl kustomize "$overlay" > "$rendered/k8s-$name.yaml"
  kubernetes-validate --strict --quiet "$rendered/k8s-$name.yaml"
  echo "$name: $(grep -c '^kind:' "$rendered/k8s-$name.yaml") resources valid"
done

# kubernetes-validate knows no CRDs (it warns and passes them): each rendered ScaledObject goes,
# as a file of its own, through the schema of KEDA's documented fields vendored in deploy/k8s/schemas.
step "check-jsonschema: KEDA ScaledObjects (overlays using components/keda)"
mkdir "$rendered/docs"
for manifest in "$rendered"/k8s-*.yaml; do
  csplit --quiet --elide-empty-files --suffix-format='%02d.yaml' \
    --prefix="$rendered/docs/$(basename "$manifest" .yaml)-" "$manifest" '/^---$/' '{*}'
done
scaled=$(grep -l '^kind: ScaledObject$' "$rendered"/docs/*.yaml)
[ -n "$scaled" ] || { echo "no ScaledObject rendered: is overlays/prod-keda gone?"; exit 1; }
# shellcheck disable=SC2086 # one file name per word
check-jsonschema --schemafile deploy/k8s/schemas/keda-scaledobject.json $scaled
# KEDA makes its own HPA: the base one must be gone wherever a ScaledObject is.
for manifest in "$rendered"/k8s-*.yaml; do
  if grep -q '^kind: ScaledObject$' "$manifest" && grep -q '^kind: HorizontalPodAutoscaler$' "$manifest"; then
    echo "$manifest: both an HPA and a KEDA ScaledObject"; exit 1
  fi
done

step "schemas: compose, Cloud Build, CI workflow"
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
check-jsonschema --builtin-schema vendor.cloudbuild deploy/cloudbuild.yaml
check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

step "amtool: Alertmanager configs, and where the example routes send a page and a ticket"
amtool check-config deploy/alertmanager/*.yml
routes=(amtool config routes test --config.file=deploy/alertmanager/alertmanager.example-routes.yml)
"${routes[@]}" --verify.receivers=pagerduty,slack,webhook severity=page
"${routes[@]}" --verify.receivers=email,webhook severity=ticket

step "terraform fmt -check ($(terraform version | head -1))"
terraform fmt -check -recursive -diff deploy/terraform && echo "formatted"

# --skip-download: checkov would otherwise fetch guidelines from its vendor's API. Skipped
# checks are marked at the resource, each with its reason.
step "checkov: Terraform"
checkov --quiet --compact --skip-download --framework terraform -d deploy/terraform
step "checkov: Dockerfile, rendered manifests, CI workflow"
checkov --quiet --compact --skip-download --framework dockerfile kubernetes github_actions \
  -f deploy/Dockerfile "$rendered"/k8s-*.yaml .github/workflows/*.yml
