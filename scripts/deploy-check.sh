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
