"""The shipped Prometheus rules and Grafana dashboard: promtool checks and unit-tests the rules,
and every metric they name is one the service exports (a renamed metric would silently blank a
panel or disarm an alert)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.core import CounterMetricFamily

from chatworks.telemetry.metrics import REGISTRY
from tests.servers import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}
# Series that Prometheus itself makes, not the service.
PROMETHEUS_OWN = {"up"}
_NAME = re.compile(r"\b((?:chatworks|process)_[a-z0-9_]+|up)\b(?![:(])")
_RECORDED = re.compile(r"\bchatworks:[a-z0-9_:]+")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI: scripts/system-deps.sh installs Debian prometheus")
        pytest.skip("promtool not installed (make test installs it: scripts/system-deps.sh)")
    return found


@pytest.mark.parametrize(
    "args",
    [["check", "rules", "rules.yml"], ["test", "rules", "rules_test.yml"],
     ["check", "config", "prometheus.yml"]],
)  # fmt: skip
def test_promtool(args):
    run = subprocess.run([_promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def exported() -> set[str]:
    """Every series name the service's registry can expose, labelled children or not."""
    names = set()
    for family in REGISTRY.collect():
        kind = "counter" if isinstance(family, CounterMetricFamily) else family.type
        names.update(family.name + s for s in SUFFIXES.get(kind, ("",)))
    return names


def _rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    exprs = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            exprs += [target["expr"] for target in panel["targets"]]
    return exprs


def test_every_metric_in_rules_and_dashboards_is_exported():
    assert DASHBOARDS, "no Grafana dashboard shipped"
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    exprs = [rule["expr"] for rule in _rules()] + _dashboard_exprs()
    # Strip label matchers and strings so label values are not read as metric names.
    used = {n for e in exprs for n in _NAME.findall(re.sub(r'\{[^}]*\}|"[^"]*"', "", e))}
    assert {"chatworks_time_to_first_token_seconds_bucket", "up"} <= used  # the regex works
    missing = used - exported() - PROMETHEUS_OWN
    assert not missing, f"named in rules/dashboards but not exported: {sorted(missing)}"
    undefined = {n for e in exprs for n in _RECORDED.findall(e)} - recorded
    assert not undefined, f"recording rules used but not defined: {sorted(undefined)}"


def test_dashboard_is_well_formed():
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path
        assert all(panel["targets"] for panel in dashboard["panels"]), path
        assert {"datasource", "job", "model"} <= {
            v["name"] for v in dashboard["templating"]["list"]
        }


def test_every_alert_names_an_existing_runbook():
    for rule in _rules():
        if "alert" in rule:
            runbook = REPO / rule["annotations"]["runbook"]
            assert runbook.is_file(), f"{rule['alert']}: {runbook} missing"
            assert rule["alert"] in runbook.read_text(), (
                f"{runbook.name} does not name {rule['alert']}"
            )
