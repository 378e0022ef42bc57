"""`chatworks bench load` against a real server: what it counts is what the server counted, an
overloaded server's 503s are reported by status, and a sweep writes its runs and plot."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.e2e.conftest import scripted_env
from tests.servers import REPO, start_server

pytestmark = pytest.mark.e2e


def bench_load(server, out, *args: str) -> dict:
    command = [sys.executable, "-m", "chatworks.cli", "bench", "load", "--url", server.api_url,
               "--out", str(out), *args]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "load.json").read_text())


def served(server) -> float:
    return server.metric(
        "chatworks_request_success_total", model="scripted", finished_reason="stop"
    )


def test_streams_are_timed_and_counted_as_the_server_counted_them(scripted_server, tmp_path):
    before = served(scripted_server)
    report = bench_load(scripted_server, tmp_path, "--scenario", "stream", "--mode",
                        "concurrent", "--concurrency", "4", "--requests", "12")  # fmt: skip
    (summary,) = report["summaries"]
    assert summary["load"] == "concurrent 4"
    assert summary["requests"] == summary["succeeded"] == 12 and summary["errors"] == {}
    assert served(scripted_server) - before == 12
    requests = report["requests"][0]
    assert all(r["output_tokens"] > 1 and 0 < r["ttft"] <= r["latency"] for r in requests)
    assert all(r["gaps"] for r in requests), "the scripted server streams piece by piece"
    for measure in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        spread = summary[measure]
        assert 0 <= spread["p50"] <= spread["p90"] <= spread["p99"]
    assert "| concurrent 4 | 12 / 12 |" in (tmp_path / "load.md").read_text()


def test_an_overloaded_server_answers_503_and_the_kit_counts_them(tmp_path_factory, tmp_path):
    data = tmp_path_factory.mktemp("overloaded")
    env = scripted_env(data, CHATWORKS_MAX_RUNNING_REQUESTS="1", CHATWORKS_MAX_WAITING_REQUESTS="0")
    server = start_server("overloaded", env)
    try:
        # 20 requests at 40/s, each of which streams for a while: one runs, the rest are shed.
        report = bench_load(server, tmp_path, "--scenario", "stream", "--mode", "constant",
                            "--rate", "40", "--requests", "20", "--concurrency", "20",
                            "--max-tokens", "200", "--prompt-words", "50")  # fmt: skip
    finally:
        server.stop()
    (summary,) = report["summaries"]
    assert summary["requests"] == 20
    assert summary["errors"].get("503", 0) > 0, summary
    assert summary["succeeded"] + sum(summary["errors"].values()) == 20
    assert set(summary["errors"]) <= {"503", "429"}, "shed, never failed"


def test_a_sweep_runs_synchronous_concurrent_and_rates_between(scripted_server, tmp_path):
    report = bench_load(scripted_server, tmp_path, "--scenario", "chat", "--mode", "sweep",
                        "--requests", "4", "--points", "2", "--concurrency", "2")  # fmt: skip
    labels = [s["load"] for s in report["summaries"]]
    assert labels[:2] == ["synchronous", "concurrent 2"]
    assert all(label.startswith("constant ") for label in labels[2:])
    assert all(s["succeeded"] == 4 for s in report["summaries"])
    assert (tmp_path / "load.png").stat().st_size > 0


def test_the_mix_and_ingest_scenarios_reach_every_route_they_name(scripted_server, tmp_path):
    api = scripted_server.api_url
    assert httpx.post(f"{api}/collections", json={"name": "loadkit"}).status_code == 201
    handbook = {"file": ("handbook.md", b"# Badges\n\nBadges are issued at the front desk.\n",
                         "text/markdown")}  # fmt: skip
    assert httpx.post(f"{api}/collections/loadkit/documents", files=handbook,
                      timeout=120).status_code == 201  # fmt: skip
    mix = bench_load(scripted_server, tmp_path / "mix", "--scenario", "mix", "--mode", "poisson",
                     "--rate", "20", "--requests", "12", "--collection", "loadkit")  # fmt: skip
    (summary,) = mix["summaries"]
    assert summary["succeeded"] == 12, summary["errors"]
    assert {r["scenario"] for r in mix["requests"][0]} == {"stream", "ask", "embeddings"}
    bench_load(scripted_server, tmp_path / "ingest", "--scenario", "ingest", "--requests", "3",
               "--collection", "loadkit")  # fmt: skip
    documents = httpx.get(f"{api}/collections/loadkit/documents").json()["data"]
    assert len(documents) == 4, "three generated documents beside the handbook"
