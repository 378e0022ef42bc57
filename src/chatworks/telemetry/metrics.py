"""Prometheus metrics. Names follow vLLM's where the meaning is the same (`vllm:` -> `chatworks_`),
so existing dashboards need only a prefix change."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

# Latency buckets (seconds) from 1 ms to 2 min: token latencies sit at the low end,
# whole requests at the high end.
_LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5,
    0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0,
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "chatworks_http_requests_total",
    "HTTP requests by route, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "chatworks_http_request_duration_seconds",
    "HTTP request latency (until the response starts for streams).",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "chatworks_time_to_first_token_seconds",
    "Time from admission to the first generated text.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
INTER_TOKEN_LATENCY = Histogram(
    "chatworks_inter_token_latency_seconds",
    "Time between consecutive streamed pieces of text.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
E2E_LATENCY = Histogram(
    "chatworks_e2e_request_latency_seconds",
    "Time from arrival to the last token of a generation.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
QUEUE_TIME = Histogram(
    "chatworks_request_queue_time_seconds",
    "Time a request waited for a generation slot.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PROMPT_TOKENS = Counter(
    "chatworks_prompt_tokens", "Prompt tokens processed.", ["model"], registry=REGISTRY
)
GENERATION_TOKENS = Counter(
    "chatworks_generation_tokens", "Tokens generated.", ["model"], registry=REGISTRY
)
REQUESTS_RUNNING = Gauge(
    "chatworks_num_requests_running", "Generations running now.", ["model"], registry=REGISTRY
)
REQUESTS_WAITING = Gauge(
    "chatworks_num_requests_waiting",
    "Requests waiting for a generation slot.",
    ["model"],
    registry=REGISTRY,
)
REQUEST_SUCCESS = Counter(
    "chatworks_request_success",
    "Finished generations by finish reason (stop, length, cancelled).",
    ["model", "finished_reason"],
    registry=REGISTRY,
)
REQUESTS_REJECTED = Counter(
    "chatworks_requests_rejected",
    "Requests turned away before generating, by reason (queue_full, queue_timeout).",
    ["model", "reason"],
    registry=REGISTRY,
)


# Security: refusals by reason, and whether the shared limiter's backend (Redis) answers.
AUTH_FAILURES = Counter(
    "chatworks_auth_failures_total",
    "Requests refused for authentication (401) or scope (403), by reason code.",
    ["reason"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "chatworks_rate_limited_total",
    "Requests refused with 429, by limit: requests, tokens, parallel, budget.",
    ["reason"],
    registry=REGISTRY,
)
LIMITER_UP = Gauge(
    "chatworks_ratelimit_backend_up",
    "1 when the rate-limit backend answered its last call, 0 when it failed.",
    ["backend"],
    registry=REGISTRY,
)
LIMITER_ERRORS = Counter(
    "chatworks_ratelimit_backend_errors_total",
    "Rate-limit backend failures, by what was done: allowed (fail-open) or refused.",
    ["backend", "action"],
    registry=REGISTRY,
)
MODERATION_FLAGGED = Counter(
    "chatworks_moderation_flagged_total",
    "Texts flagged by moderation, by category (prompt_injection, pii) and source "
    "(moderations: the endpoint; chat: the guard on chat and completion input).",
    ["category", "source"],
    registry=REGISTRY,
)

# The response cache (chatworks.cache): hit, miss, or bypass (a request that is not cacheable).
CACHE_REQUESTS = Counter(
    "chatworks_response_cache_requests_total",
    "Cacheable routes' requests by cache outcome: hit, miss, bypass.",
    ["route", "result"],
    registry=REGISTRY,
)
CACHE_ERRORS = Counter(
    "chatworks_response_cache_errors_total",
    "Cache backend failures (served as a miss, or the write dropped), by backend and action.",
    ["backend", "action"],
    registry=REGISTRY,
)
UPSTREAM_BREAKER_OPEN = Gauge(
    "chatworks_upstream_breaker_open",
    "1 while the upstream provider's circuit breaker is open (requests answer 503).",
    registry=REGISTRY,
)
OUTPUT_LEAKS = Counter(
    "chatworks_output_system_prompt_leaks_total",
    "Grounded answers that recited a long span of the system prompt (replaced by the refusal).",
    registry=REGISTRY,
)


class _EngineCollector:
    """Reads the native engine's own counters at scrape time, so the decode loop never touches
    Prometheus objects. Rates give throughput: rate(decode_tokens) / rate(decode_seconds) is
    decode tokens/s; rate(decode_tokens) / rate(steps) is the mean batch size."""

    def __init__(self) -> None:
        self._engines: dict[str, tuple[object, int]] = {}

    def watch(self, model: str, stats: object, slots: int) -> None:
        self._engines[model] = (stats, slots)

    def collect(self):
        def family(kind, name, doc):
            return kind(name, doc, labels=["model"])

        gauges = {
            "running": family(GaugeMetricFamily, "chatworks_engine_running_sequences",
                              "Sequences in the engine's batch."),
            "waiting": family(GaugeMetricFamily, "chatworks_engine_waiting_sequences",
                              "Sequences queued inside the engine."),
            "last_batch_size": family(GaugeMetricFamily, "chatworks_engine_batch_size",
                                      "Sequences decoded in the last step."),
        }  # fmt: skip
        counters = {
            name: family(CounterMetricFamily, f"chatworks_engine_{name}", doc)
            for name, doc in {
                "steps": "Decode steps run.",
                "prefill_tokens": "Prompt tokens prefilled.",
                "decode_tokens": "Tokens decoded.",
                "prefill_seconds": "Time spent prefilling.",
                "decode_seconds": "Time spent in decode steps.",
                "queue_seconds": "Time admitted sequences waited inside the engine.",
            }.items()
        }
        usage = GaugeMetricFamily(
            "chatworks_kv_cache_usage_perc", "Fraction of KV-cache slots in use.", labels=["model"]
        )
        for model, (stats, slots) in self._engines.items():
            for attr, metric in (*gauges.items(), *counters.items()):
                metric.add_metric([model], float(getattr(stats, attr)))
            usage.add_metric([model], stats.running / slots)
        yield from gauges.values()
        yield from counters.values()
        yield usage


_ENGINES = _EngineCollector()
REGISTRY.register(_ENGINES)


def watch_engine(model: str, stats: object, slots: int) -> None:
    """Export a native engine's `EngineStats` under `model` from now on."""
    _ENGINES.watch(model, stats, slots)
