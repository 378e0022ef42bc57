"""Incident drill, run for real: the observed stack of `make run-observed` (chatworks serve with
console traces, Prometheus with deploy/prometheus/rules.yml, Alertmanager with
deploy/alertmanager routing to `chatworks alerts receive`), on an embedded Postgres, under a
steady mix of /v1/ask, streamed chat and embeddings from the load kit. Postgres is stopped; the
drill waits for the alert to reach the receiver, captures the evidence (Prometheus' view of
readiness, errors by code and request rate; the trace of one failing request from the server's
console spans), starts Postgres again, waits for the resolved notice, stops the load and writes
the timeline from the logs. Everything listens on 127.0.0.1.

    .venv/bin/python bench/incident_drill.py [--rate 0.3] [--baseline-s 60] [--out runs/drill]

The shipped rules and routes are used as they are (scrape and evaluation every 15 s,
ChatworksNotReady `for: 2m`, Alertmanager group_wait 30 s and group_interval 5 m), so a drill
takes about 10 minutes; each wait is bounded (--max-wait-s). Writes drill.md (evidence and
timeline), drill.json and the logs of every process to the output folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.soak import ingest
from chatworks.loadtest.client import Result
from chatworks.loadtest.runner import Bounds, Run, Target, run_load
from chatworks.loadtest.schedule import Load
from chatworks.loadtest.workload import Workload
from tests.e2e.test_alerting import Processes, received
from tests.e2e.test_backpressure import wait_until
from tests.e2e.test_fault_drills import DrillPostgres, drill_postgres
from tests.servers import REPO, LiveServer, free_port, start_server

ALERT = "ChatworksNotReady"
COLLECTION = "drill-docs"
DOCS = (REPO / "README.md", REPO / "docs/operations/runbooks/database-down.md")
PROBE_ID = "drill-probe-1"  # the X-Request-ID of the failing request whose trace is kept
WINDOW_S = 30.0  # the load runs in windows so it can be stopped between two


def utc(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")  # fmt: skip


class Timeline:
    """What the driver did, when (UTC); the logs' events are added when the drill is over."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def mark(self, source: str, what: str) -> None:
        self.events.append((utc(), source, what))
        print(f"{self.events[-1][0]}  [{source}] {what}", flush=True)


class SteadyLoad(threading.Thread):
    """The load kit at a constant rate, in windows of WINDOW_S until stopped; every result keeps
    the wall-clock time its window started, so requests land on the timeline."""

    def __init__(self, target: Target, workload: Workload, load: Load) -> None:
        super().__init__(daemon=True)
        self.target, self.workload, self.load = target, workload, load
        self.stopping = threading.Event()
        self.windows: list[tuple[float, Run]] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            began, first = time.time(), len(self.windows) * 100_000
            bounds = Bounds(requests=100_000, seconds=WINDOW_S)
            run = asyncio.run(run_load(self.target, self.workload, self.load, bounds, first=first))
            self.windows.append((began, run))

    def requests(self) -> list[dict]:
        return [{"at": began + r.start, "scenario": r.scenario, "ok": r.ok,
                 "outcome": outcome(r), "latency_s": round(r.latency, 3)}
                for began, run in self.windows for r in run.results]  # fmt: skip


def outcome(r: Result) -> str:
    """The load kit's outcome with the error code of a refused request (`503 database_unavailable`,
    `transport timeout`); a stream that failed after its 200 already names its code."""
    refused = r.error and not 0 < r.status < 300
    return f"{r.outcome} {r.error}" if refused else r.outcome


def configs(home: Path, server: str, alertmanager: str, receiver: str) -> tuple[Path, Path]:
    """The shipped Prometheus and Alertmanager configs, addresses rewritten, nothing else (as
    scripts/run-observed.sh does)."""
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    prom["rule_files"] = [str(REPO / "deploy/prometheus/rules.yml")]
    prom["scrape_configs"][0]["static_configs"] = [{"targets": [server]}]
    prom["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    am = yaml.safe_load((REPO / "deploy/alertmanager/alertmanager.yml").read_text())
    (hook,) = (r for r in am["receivers"] if r["name"] == am["route"]["receiver"])
    hook["webhook_configs"][0]["url"] = f"http://{receiver}/"
    written = home / "prometheus.yml", home / "alertmanager.yml"
    for path, data in zip(written, (prom, am), strict=True):
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return written


def json_objects(text: str):
    """Every JSON object in a log that mixes one-line log records and the console exporter's
    indented spans (plus the odd plain-text line from a library)."""
    decoder, position = json.JSONDecoder(), 0
    for match in re.finditer(r"^\{", text, re.MULTILINE):
        if match.start() < position:
            continue  # inside an object already read
        try:
            obj, position = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        yield obj


def prometheus_query(prom: str, query: str, **params) -> list[dict]:
    path = "query_range" if "start" in params else "query"
    answer = httpx.get(f"http://{prom}/api/v1/{path}", params={"query": query, **params},
                       timeout=30).json()  # fmt: skip
    return answer["data"]["result"]


def evidence(prom: str, since: float) -> dict:
    """What an on-call engineer reads on the dashboard once paged."""
    now = time.time()
    span = {"start": since, "end": now, "step": "15s"}
    instant = {
        "ready_database": 'chatworks_ready{check="database"}',
        "errors_by_code_2m": "sum by (status, code) (increase(chatworks_errors_total[2m]))",
        "requests_per_s_by_status_1m": (
            "sum by (status) (rate(chatworks_http_requests_total[1m]))"
        ),
        "usage_records_lost": "chatworks_usage_records_lost_total",
        "alerts": "ALERTS",
    }
    found = {name: prometheus_query(prom, q) for name, q in instant.items()}
    found["ready_database_range"] = prometheus_query(prom, instant["ready_database"], **span)
    return found


def alert_state_changes(prom: str, since: float, until: float) -> list[tuple[str, str, str]]:
    """When Prometheus had each alert pending and firing (its ALERTS series, at 5 s steps)."""
    changes = []
    for s in prometheus_query(prom, "ALERTS", start=since, end=until, step="5s"):
        points = [float(t) for t, _ in s["values"]]
        name = f"{s['metric']['alertname']} {s['metric']['alertstate']}"
        changes += [(utc(points[0]), "Prometheus", name),
                    (utc(points[-1]), "Prometheus", f"{name}, last seen")]  # fmt: skip
    return changes


def probe(api: str) -> dict:
    """One request by hand during the outage, with a known request id to find it in the logs."""
    body = {"question": "What does the database-down runbook say?", "collection": COLLECTION}
    r = httpx.post(f"{api}/ask", json=body, headers={"X-Request-ID": PROBE_ID}, timeout=60)
    return {"status": r.status_code, "headers": {k: r.headers[k] for k in r.headers
            if k in ("retry-after", "x-request-id", "content-type")}, "body": r.json()}  # fmt: skip


def probe_trace(records: list[dict]) -> dict:
    """The probe's log lines, and the spans of its trace from the console exporter."""
    lines = [r for r in records if r.get("request_id") == PROBE_ID]
    trace_id = next((r["trace_id"] for r in lines if r.get("trace_id")), None)
    spans = [r for r in records if trace_id and "context" in r
             and r["context"].get("trace_id", "").removeprefix("0x") == trace_id]  # fmt: skip
    keep = ("name", "kind", "start_time", "end_time", "status", "attributes", "events")
    return {"trace_id": trace_id, "log_lines": lines,
            "spans": [{k: s.get(k) for k in keep} for s in spans]}  # fmt: skip


def log_events(records: list[dict], since: str) -> list[tuple[str, str, str]]:
    """The server's warnings and errors during the drill: first and last of each, with counts."""
    seen: dict[str, list[str]] = {}
    for r in records:
        if r.get("level") in ("warning", "error") and r.get("timestamp", "") >= since:
            seen.setdefault(r["event"], []).append(r["timestamp"])
    out = []
    for event, times in seen.items():
        out.append((times[0], "server log", f"first `{event}` ({len(times)} in all)"))
        if len(times) > 1:
            out.append((times[-1], "server log", f"last `{event}`"))
    return out


def report(result: dict) -> str:
    lines = ["# Incident drill: Postgres stopped under load", "",
             f"Setup: {json.dumps(result['setup'])}", "", "## Impact (load kit)", "",
             "```json", json.dumps(result["impact"], indent=1), "```", "",
             "## Alerts received", ""]  # fmt: skip
    lines += [f"- `{json.dumps(a, sort_keys=True)}`" for a in result["alerts"]]
    lines += ["", "## The failing request (probe)", "", "```json",
              json.dumps(result["probe"], indent=1), "```", "", "## Its trace", "", "```json",
              json.dumps(result["trace"], indent=1), "```", "",
              "## Prometheus, when the page arrived", "", "```json",
              json.dumps(result["evidence"], indent=1), "```", "", "## Timeline (UTC)", "",
              "| time | source | event |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {at} | {source} | {what} |" for at, source, what in result["timeline"]]
    return "\n".join(lines) + "\n"


def load_events(requests: list[dict]) -> list[tuple[str, str, str]]:
    failed = [r for r in requests if not r["ok"]]
    marks = [(requests[0], "first request")] if requests else []
    if failed:
        marks += [(failed[0], f"first failed request ({failed[0]['outcome']})"),
                  (failed[-1], f"last failed request ({failed[-1]['outcome']})")]  # fmt: skip
        after = [r for r in requests if r["at"] > failed[-1]["at"]]
        marks += [(after[0], "first request after the last failure")] if after else []
    marks += [(requests[-1], "last request")] if requests else []
    return [(utc(r["at"]), "load kit", what) for r, what in marks]


def impact(requests: list[dict]) -> dict:
    failed = [r for r in requests if not r["ok"]]
    return {
        "sent": len(requests),
        "failed": len(failed),
        "failed_by_outcome": dict(Counter(r["outcome"] for r in failed)),
        "failed_by_scenario": dict(Counter(r["scenario"] for r in failed)),
        "sent_by_scenario": dict(Counter(r["scenario"] for r in requests)),
        "failing_for_s": round(failed[-1]["at"] - failed[0]["at"], 1) if failed else 0.0,
    }


def alert_received(inbox: Path, status: str) -> dict | None:
    return next((a for a in received(inbox)
                 if a["alertname"] == ALERT and a["status"] == status), None)  # fmt: skip


@contextlib.contextmanager
def observed_stack(home: Path) -> Iterator[tuple[LiveServer, str, Path, DrillPostgres]]:
    """chatworks (console traces) on an embedded Postgres, Prometheus, Alertmanager and the
    receiver, as `make run-observed` starts them; yields the server, Prometheus' address, the
    receiver's output and Postgres."""
    receiver, alertmanager, prom = (f"127.0.0.1:{free_port()}" for _ in range(3))
    processes = Processes()
    with contextlib.ExitStack() as stack:
        stack.callback(processes.close)
        inbox = processes.start("drill-receiver", [sys.executable, "-m", "chatworks.cli",
                                "alerts", "receive", "--port", receiver.split(":")[1]])  # fmt: skip
        postgres = stack.enter_context(drill_postgres(home / "pg"))
        server = start_server("drill", {
            "CHATWORKS_DATA_DIR": str(home / "data"), "CHATWORKS_DATABASE_URL": postgres.url,
            "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "chatworks"})  # fmt: skip
        stack.callback(server.stop)
        prom_config, am_config = configs(home, f"127.0.0.1:{server.port}", alertmanager,
                                         receiver)  # fmt: skip
        processes.start("drill-alertmanager", [
            shutil.which("prometheus-alertmanager") or "alertmanager",
            f"--config.file={am_config}", f"--storage.path={home / 'am'}",
            f"--web.listen-address={alertmanager}", "--cluster.listen-address=",
        ], ready=f"http://{alertmanager}/-/ready")  # fmt: skip
        processes.start("drill-prometheus", [
            "prometheus", f"--config.file={prom_config}",
            f"--storage.tsdb.path={home / 'prom'}", f"--web.listen-address={prom}",
        ], ready=f"http://{prom}/-/ready")  # fmt: skip
        yield server, prom, inbox, postgres


def drill(args: argparse.Namespace, home: Path, timeline: Timeline) -> dict:
    """The incident, in order; returns what the write-up needs (the logs are read after)."""
    with observed_stack(home) as (server, prom, inbox, postgres):
        timeline.mark("driver", "stack up: chatworks, Postgres, Prometheus, Alertmanager")
        ingest(server.api_url, COLLECTION, DOCS)
        model = httpx.get(f"{server.api_url}/models").json()["data"][0]["id"]
        workload = Workload("mix", model, max_tokens=args.max_tokens, collection=COLLECTION)
        load = SteadyLoad(Target(server.api_url, timeout=60.0), workload,
                          Load("constant", args.concurrency, args.rate))  # fmt: skip
        scraped = lambda: prometheus_query(prom, 'up{job="chatworks"} == 1')  # noqa: E731
        assert wait_until(scraped, 60), "Prometheus never scraped chatworks"
        started = time.time()
        load.start()
        timeline.mark("driver", f"load started: mix at {args.rate}/s, model {model}")
        time.sleep(args.baseline_s)

        postgres.stop()
        timeline.mark("driver", "FAULT: Postgres stopped (pg_ctl stop -m fast)")
        time.sleep(5)
        probed = probe(server.api_url)
        timeline.mark("driver", f"probe request answered {probed['status']}")
        fired = wait_until(lambda: alert_received(inbox, "firing"), args.max_wait_s)
        timeline.mark("driver", f"{ALERT} firing seen at the receiver: {fired}")
        found = evidence(prom, started)

        postgres.start()
        timeline.mark("driver", "FIX: Postgres started again (pg_ctl start)")
        ready = wait_until(lambda: httpx.get(f"{server.base_url}/readyz").is_success, 120)
        timeline.mark("driver", f"/readyz 200 again: {ready}")
        resolved = wait_until(lambda: alert_received(inbox, "resolved"), args.max_wait_s)
        timeline.mark("driver", f"{ALERT} resolved seen at the receiver: {resolved}")
        load.stopping.set()
        load.join(timeout=120)
        timeline.mark("driver", "load stopped")
        changes = alert_state_changes(prom, started, time.time())
    return {"model": model, "started": started, "server_log": server.log_path, "inbox": inbox,
            "requests": load.requests(), "probe": probed, "evidence": found,
            "changes": changes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=0.3, help="requests/s, constant")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--baseline-s", type=float, default=60.0, help="load before the fault")
    parser.add_argument("--max-wait-s", type=float, default=480.0, help="bound on each wait")
    parser.add_argument("--out", type=Path, default=Path("runs/drill"))
    args = parser.parse_args()
    out = args.out / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True)
    timeline = Timeline()
    with tempfile.TemporaryDirectory(prefix="drill-") as home:
        ran = drill(args, Path(home), timeline)

    records = list(json_objects(ran["server_log"].read_text(errors="replace")))
    alerts = received(ran["inbox"])  # ChatworksNotReady and whatever else fired
    events = timeline.events + ran["changes"] + log_events(records, utc(ran["started"]))
    events += load_events(ran["requests"])
    events += [(a["received_at"], "receiver", f"{a['alertname']} {a['status']} (check "
                f"{a['labels'].get('check')}, starts_at {a['starts_at']}, ends_at "
                f"{a['ends_at']})") for a in alerts]  # fmt: skip
    result = {
        "setup": vars(args) | {"out": str(out), "model": ran["model"], "window_s": WINDOW_S},
        "impact": impact(ran["requests"]),
        "alerts": alerts,
        "probe": ran["probe"],
        "trace": probe_trace(records),
        "evidence": ran["evidence"],
        "timeline": sorted(events),
        "requests": ran["requests"],
    }
    for log in (ran["server_log"], *ran["inbox"].parent.glob("drill-*.log")):
        shutil.copy(log, out / log.name)
    (out / "drill.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "drill.md").write_text(report(result))
    print(f"\nimpact: {json.dumps(result['impact'])}\nwrote {out}/drill.md")


if __name__ == "__main__":
    main()
