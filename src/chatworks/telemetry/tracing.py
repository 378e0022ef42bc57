"""OpenTelemetry traces: set-up from the standard `OTEL_*` variables, and the span names and
GenAI attributes the rest of the code uses.

Covers: choosing exporters (`OTEL_TRACES_EXPORTER` = otlp, console, none; OTLP over
`http/protobuf` or `grpc` by `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`), the service resource
(`OTEL_SERVICE_NAME`, default "chatworks"), sampling (`OTEL_TRACES_SAMPLER[_ARG]`, read by the
SDK), and helpers to open spans. Does not cover: where spans start (the API middleware, the
retrieval and generation code call `tracer()` themselves).

Off unless `OTEL_TRACES_EXPORTER` or an OTLP endpoint is set: then no provider is installed and
`tracer()` is the API's no-op tracer, so a span costs a function call and nothing is buffered.
The SDK reads its own variables (batch delays, headers, timeouts) as the spec says it must;
settings.py does not duplicate them.

Message content never goes into spans: only sizes, token counts and parameters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

_installed: object | None = None  # the SDK TracerProvider we set, to flush at shutdown

# GenAI semantic-convention attribute names (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
MAX_TOKENS = "gen_ai.request.max_tokens"
TEMPERATURE = "gen_ai.request.temperature"
TOP_P = "gen_ai.request.top_p"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
DATA_SOURCE = "gen_ai.data_source.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"  # function | extension (a server's tool) | datastore (search)
# Message content: only with CHATWORKS_LOG_CONTENT=true, and then PII-redacted (api/generation.py).
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"


def _env(name: str, environ: Mapping[str, str]) -> str:
    return environ.get(name, "").strip()


def exporters_wanted(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters to install: the `OTEL_TRACES_EXPORTER` list, else "otlp" when an OTLP
    endpoint is configured, else none (tracing off)."""
    if _env("OTEL_SDK_DISABLED", environ).lower() == "true":
        return []
    names = [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER", environ).split(",")]
    names = [n for n in names if n and n != "none"]
    if names or _env("OTEL_TRACES_EXPORTER", environ):
        return names
    endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", environ) or _env(
        "OTEL_EXPORTER_OTLP_ENDPOINT", environ
    )
    return ["otlp"] if endpoint else []


def _otlp_exporter(environ: Mapping[str, str]):
    protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ) or _env(
        "OTEL_EXPORTER_OTLP_PROTOCOL", environ
    )
    # Imported only when used: the grpc exporter pulls in grpcio, which costs start-up time.
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol in ("", "http/protobuf"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use http/protobuf or grpc")
    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: from the env


def configure_tracing(environ: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK once per process if the environment asks for traces; True if tracing is
    on. Call it in each worker process (after a fork), before serving."""
    global _installed
    if _installed is not None:
        return True
    wanted = exporters_wanted(environ)
    if not wanted:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    import chatworks

    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these defaults.
    defaults = {SERVICE_NAME: "chatworks", "service.version": chatworks.__version__}
    if _env("OTEL_SERVICE_NAME", environ):
        defaults[SERVICE_NAME] = _env("OTEL_SERVICE_NAME", environ)
    provider = TracerProvider(resource=Resource.create(defaults))  # sampler from OTEL_TRACES_*
    for name in wanted:
        if name == "otlp":
            exporter = _otlp_exporter(environ)
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}")
        # Batching keeps export off the request path; OTEL_BSP_* tune it.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _installed = provider
    return True


# Probes, scrapes and static files: frequent, cheap, and noise in a trace store.
_UNTRACED = ("/metrics", "/healthz", "/readyz", "/static/", "/favicon.ico")


def untraced(scope: Mapping[str, object]) -> bool:
    """FastAPI's telemetry `exclude` hook: no server span for these requests."""
    path = str(scope.get("path", ""))
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in _UNTRACED)


def shutdown_tracing() -> None:
    """Flush spans still buffered (at server shutdown)."""
    if _installed is not None:
        _installed.force_flush()


def tracer() -> Tracer:
    return trace.get_tracer("chatworks")


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) as hex of the active span, if there is a valid one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def set_attributes(span: Span, attributes: Mapping[str, object]) -> None:
    """Set the attributes that are not None (the SDK rejects None values)."""
    if span.is_recording():
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
