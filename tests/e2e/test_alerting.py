"""An alert that reaches someone: a real chatworks on a real Postgres, scraped by a real
Prometheus with the shipped rules (deploy/prometheus), which sends to a real Alertmanager with
the shipped routes (deploy/alertmanager), which posts to `chatworks alerts receive`. The drill
stops Postgres: the receiver gets ChatworksNotReady for the database check, and after Postgres
is back, the same alert resolved. Only the intervals are shortened (scrape and evaluation 1 s,
the alert's `for` 1 s, Alertmanager's grouping 1 s), everything listens on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import scripted_env
from tests.e2e.test_backpressure import wait_until
from tests.e2e.test_fault_drills import drill_postgres
from tests.servers import ARTIFACTS, REPO, free_port, start_server

pytestmark = pytest.mark.e2e

ALERT = "ChatworksNotReady"
FAST = "1s"


def _binary(*names: str) -> str:
    found = next((p for p in map(shutil.which, names) if p), None)
    if found is None:
        pytest.fail(f"{names[0]} is missing: run scripts/system-deps.sh (make test does)")
    return found


def _write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def prometheus_config(home: Path, target: str, alertmanager: str) -> Path:
    """The shipped config and rules, pointed at `target` and `alertmanager`, on short clocks."""
    rules = yaml.safe_load((REPO / "deploy/prometheus/rules.yml").read_text())
    drilled = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == ALERT]
    assert len(drilled) == 1 and "for" in drilled[0]
    drilled[0]["for"] = FAST
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval=FAST, evaluation_interval=FAST)
    config["rule_files"] = [str(_write_yaml(home / "rules.yml", rules))]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    return _write_yaml(home / "prometheus.yml", config)


def alertmanager_config(home: Path, receiver: str) -> Path:
    """The shipped routes, sending to `receiver`, grouping for 1 s instead of minutes."""
    config = yaml.safe_load((REPO / "deploy/alertmanager/alertmanager.yml").read_text())
    config["route"].update(group_wait=FAST, group_interval=FAST)
    (webhook,) = (r for r in config["receivers"] if r["name"] == config["route"]["receiver"])
    webhook["webhook_configs"][0]["url"] = f"http://{receiver}/"
    return _write_yaml(home / "alertmanager.yml", config)


class Processes:
    """Background processes with their output in tests/artifacts; all stopped on close."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], ready: str | None = None) -> Path:
        log = ARTIFACTS / f"{name}.log"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.running.append(process)
        if ready is not None:
            up = wait_until(lambda: _answers(ready) or process.poll() is not None, 60)
            assert up and process.poll() is None, log.read_text()[-2000:]
        return log

    def close(self) -> None:
        for process in reversed(self.running):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.close()


def received(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_postgres_down_pages_through_alertmanager_and_resolves(tmp_path_factory, processes):
    home = tmp_path_factory.mktemp("alerting")
    receiver, alertmanager, prometheus = (f"127.0.0.1:{free_port()}" for _ in range(3))
    # The receiver's stdout is its record of alerts: one JSON line each.
    inbox = processes.start("alert-receiver", [sys.executable, "-m", "chatworks.cli", "alerts",
                            "receive", "--port", receiver.rsplit(":", 1)[1]])  # fmt: skip
    assert wait_until(lambda: "alert receiver on" in inbox.read_text(), 30)
    processes.start("alertmanager", [
        _binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={alertmanager_config(home, receiver)}",
        f"--storage.path={home / 'alertmanager'}", f"--web.listen-address={alertmanager}",
        "--cluster.listen-address=",  # one instance: no gossip port
    ], ready=f"http://{alertmanager}/-/ready")  # fmt: skip

    with drill_postgres(tmp_path_factory.mktemp("alerting-pg")) as postgres:
        env = scripted_env(tmp_path_factory.mktemp("alerting-data"),
                           CHATWORKS_DATABASE_URL=postgres.url)  # fmt: skip
        server = start_server("alerting", env)
        try:
            target = f"127.0.0.1:{server.port}"
            config = prometheus_config(home, target, alertmanager)
            processes.start("prometheus", [
                _binary("prometheus"), f"--config.file={config}",
                f"--storage.tsdb.path={home / 'prometheus'}", f"--web.listen-address={prometheus}",
                "--rules.alert.resend-delay=1s",
            ], ready=f"http://{prometheus}/-/ready")  # fmt: skip

            def alerts(status: str) -> list[dict]:
                return [a for a in received(inbox)
                        if a["alertname"] == ALERT and a["status"] == status]  # fmt: skip

            # Scraped and evaluated while healthy: nothing is sent.
            up = f"http://{prometheus}/api/v1/query?query=up"
            assert wait_until(lambda: '"1"]' in httpx.get(up).text, 30), httpx.get(up).text
            assert wait_until(lambda: _evaluated(prometheus), 30)
            assert alerts("firing") == []

            postgres.stop()
            assert wait_until(lambda: alerts("firing"), 60), received(inbox)
            page = alerts("firing")[0]
            assert page["labels"]["check"] == "database"
            assert page["labels"]["instance"] == target
            assert page["labels"]["severity"] == "page"
            assert page["annotations"]["runbook"] == "docs/operations/runbooks/database-down.md"
            assert page["receiver"] == "webhook"
            assert alerts("resolved") == []  # not while the database is still down

            postgres.start()
            assert wait_until(lambda: alerts("resolved"), 60), received(inbox)
            resolved = alerts("resolved")[-1]
            assert resolved["labels"] == page["labels"]
            assert resolved["starts_at"] == page["starts_at"] and resolved["ends_at"]
        finally:
            server.stop()


def _evaluated(prometheus: str) -> bool:
    """The rule has been evaluated at least once on a scrape of the healthy server."""
    rules = httpx.get(f"http://{prometheus}/api/v1/rules?type=alert").json()["data"]["groups"]
    rule = next(r for g in rules for r in g["rules"] if r["name"] == ALERT)
    return rule["health"] == "ok" and rule.get("lastEvaluation", "").startswith("20")
