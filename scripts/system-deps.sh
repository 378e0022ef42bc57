#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, once. Safe to run again.
set -euo pipefail
needed=()
command -v chromium >/dev/null 2>&1 || needed+=(chromium)
# Offline prose for `chatworks train run --preset tiny` (reStructuredText sources of the docs).
[ -d /usr/share/doc/python3.11/html/_sources ] || needed+=(python3.11-doc)
# A real Redis for the shared rate-limit tests (tests/conftest.py starts and stops its own).
command -v redis-server >/dev/null 2>&1 || needed+=(redis-server)
# promtool checks and unit-tests the alert rules under deploy/prometheus (make run-observed
# also starts this Prometheus).
command -v promtool >/dev/null 2>&1 || needed+=(prometheus)
# Alertmanager routes the alerts (make run-observed, tests/e2e/test_alerting.py); amtool checks
# its configuration (make deploy-check).
command -v amtool >/dev/null 2>&1 || needed+=(prometheus-alertmanager)
# The load balancer in front of replicas (make run-replicas, tests/e2e/test_replicas.py); in
# /usr/sbin, which a user's PATH may lack.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || needed+=(haproxy)
# A Java runtime for Spark (`chatworks spark ...`, tests/integration/test_spark.py): OpenJDK 17.
dpkg -s default-jre-headless >/dev/null 2>&1 || needed+=(default-jre-headless)
[ ${#needed[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing system packages: ${needed[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
