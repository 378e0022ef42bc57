"""Which exporters the standard OTEL_* variables select (telemetry/tracing.py); no SDK is
installed here, so the process's global tracer provider is left alone."""

from __future__ import annotations

import pytest

from chatworks.telemetry.tracing import _otlp_exporter, exporters_wanted, untraced


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, []),  # off unless asked
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
    ],
)
def test_exporters_follow_the_standard_variables(env, wanted):
    assert exporters_wanted(env) == wanted


def test_the_protocol_picks_the_otlp_exporter(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    grpc = _otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    http = _otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert "grpc" in type(grpc).__module__ and "http" in type(http).__module__
    assert "http" in type(_otlp_exporter({})).__module__  # the spec's default
    with pytest.raises(ValueError, match="http/json"):
        _otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    grpc.shutdown()
    http.shutdown()


def test_probes_and_scrapes_are_untraced():
    assert untraced({"path": "/metrics"}) and untraced({"path": "/static/app.js"})
    assert not untraced({"path": "/v1/ask"}) and not untraced({"path": "/metricsx"})
