"""Metrics move when the service does: sizes, in-flight, errors by code, generation phases, the
build, the engine's counters. In process (TestClient), with the scripted provider."""

from __future__ import annotations

import dataclasses
import time

from fastapi.testclient import TestClient

from chatworks.api.app import create_app
from chatworks.engine.scheduler import EngineStats
from chatworks.settings import Settings
from chatworks.telemetry.metrics import ENGINE_METRICS, REGISTRY, watch_engine


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_follow_requests(tmp_path):
    (tmp_path / "s.json").write_text('{"rules": []}')
    settings = Settings(data_dir=tmp_path, provider="scripted", script_path=tmp_path / "s.json",
                        _env_file=None)  # fmt: skip
    route = {"route": "/v1/chat/completions"}
    before = {
        "bad": value("chatworks_errors_total", status="400", code="invalid_request"),
        "sizes": value("chatworks_http_response_size_bytes_count", **route),
        "decode": value("chatworks_request_decode_time_seconds_count", model="scripted"),
    }
    # A loopback base URL: a keyless server refuses other host names (api/middleware.py).
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        body = {"model": "scripted", "messages": [{"role": "user", "content": "one two"}]}
        ok = client.post("/v1/chat/completions", json=body)
        assert ok.status_code == 200
        assert client.post("/v1/chat/completions", json={"model": 3}).status_code == 400
        scraped = client.get("/metrics").text
    assert (
        value("chatworks_errors_total", status="400", code="invalid_request") == before["bad"] + 1
    )
    assert value("chatworks_http_response_size_bytes_count", **route) == before["sizes"] + 2
    assert value("chatworks_http_response_size_bytes_sum", **route) >= len(ok.content)
    assert value("chatworks_http_requests_in_flight") == 0  # every request has left
    assert value("chatworks_request_decode_time_seconds_count", model="scripted") == (
        before["decode"] + 1
    )
    assert 'chatworks_build_info{model="scripted",provider="scripted"' in scraped
    assert 'chatworks_ready{check="database"} 1.0' in scraped
    assert value("chatworks_data_disk_size_bytes") > value("chatworks_data_disk_free_bytes") > 0


def test_every_engine_counter_is_exported():
    """The collector exports `EngineStats` field by field: a new field needs a metric name."""
    assert {f.name for f in dataclasses.fields(EngineStats)} == set(ENGINE_METRICS)
    watch_engine("probe-model", EngineStats(decode_tokens=7))
    assert value("chatworks_engine_decode_tokens_total", model="probe-model") == 7
