"""Prometheus metrics: every name and label chatworks exports, in one place, grouped by subject.

Names follow vLLM's where the meaning is the same (`vllm:` -> `chatworks_`), so existing
dashboards need only a prefix change. The native engine's own counters are read at scrape time
(`watch_engine`): the decode loop never touches a Prometheus object.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

import chatworks

REGISTRY = CollectorRegistry(auto_describe=True)

# Latency buckets (seconds) from 1 ms to 2 min: token latencies sit at the low end,
# whole requests at the high end.
_LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5,
    0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0,
)  # fmt: skip
_SIZE_BUCKETS = tuple(4**i for i in range(2, 12))  # 16 B .. 4 MiB
_TOKEN_BUCKETS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

# --- HTTP ------------------------------------------------------------------------------------

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
HTTP_IN_FLIGHT = Gauge(
    "chatworks_http_requests_in_flight",
    "HTTP requests being served now.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
HTTP_REQUEST_SIZE = Histogram(
    "chatworks_http_request_size_bytes",
    "Request body size (from Content-Length).",
    ["route"],
    buckets=_SIZE_BUCKETS,
    registry=REGISTRY,
)
HTTP_RESPONSE_SIZE = Histogram(
    "chatworks_http_response_size_bytes",
    "Response body size as sent.",
    ["route"],
    buckets=_SIZE_BUCKETS,
    registry=REGISTRY,
)
ERRORS = Counter(
    "chatworks_errors_total",
    "Error responses by status and error code (OpenAI-shaped `error.code`).",
    ["status", "code"],
    registry=REGISTRY,
)


# --- Generation: latency, tokens and outcomes per request ------------------------------------

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
PREFILL_TIME = Histogram(
    "chatworks_request_prefill_time_seconds",
    "Per request: time from admission into the engine to the first token (vLLM's name).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DECODE_TIME = Histogram(
    "chatworks_request_decode_time_seconds",
    "Per request: time from the first token to the last (vLLM's name).",
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
PROMPT_TOKENS_PER_REQUEST = Histogram(
    "chatworks_request_prompt_tokens",
    "Prompt tokens per finished request.",
    ["model"],
    buckets=_TOKEN_BUCKETS,
    registry=REGISTRY,
)
GENERATION_TOKENS_PER_REQUEST = Histogram(
    "chatworks_request_generation_tokens",
    "Generated tokens per finished request.",
    ["model"],
    buckets=_TOKEN_BUCKETS,
    registry=REGISTRY,
)
REQUESTS_RUNNING = Gauge(
    "chatworks_num_requests_running",
    "Generations running now.",
    ["model"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
REQUESTS_WAITING = Gauge(
    "chatworks_num_requests_waiting",
    "Requests waiting for a generation slot.",
    ["model"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
REQUEST_SUCCESS = Counter(
    "chatworks_request_success",
    "Finished generations by finish reason: stop, length, tool_calls, cancelled, error.",
    ["model", "finished_reason"],
    registry=REGISTRY,
)
REQUESTS_REJECTED = Counter(
    "chatworks_requests_rejected",
    "Requests turned away before generating, by reason (queue_full, queue_timeout).",
    ["model", "reason"],
    registry=REGISTRY,
)


# --- The native engine -----------------------------------------------------------------------


# The engine's `EngineStats`, field by field (engine/scheduler.py): (kind, name, help). The
# collector exports every field of the stats it watches and fails the scrape on a field missing
# here, so a new counter cannot be silently left out (tests/unit/test_http_metrics.py).
ENGINE_METRICS = {
    "running": ("gauge", "chatworks_engine_running_sequences", "Sequences in the engine's batch."),
    "waiting": ("gauge", "chatworks_engine_waiting_sequences",
                "Sequences queued inside the engine."),
    "last_batch_size": ("gauge", "chatworks_engine_batch_size",
                        "Sequences decoded in the last step."),
    "prefix_cache_bytes": ("gauge", "chatworks_engine_prefix_cache_bytes",
                           "Memory held by the prefix cache."),
    "kv_cache_usage": ("gauge", "chatworks_kv_cache_usage_perc",
                       "Fraction of the KV-cache budget (or of the slots, without one) that "
                       "admitted sequences may fill."),
    "steps": ("counter", "chatworks_engine_steps", "Decode steps run."),
    "prefill_tokens": ("counter", "chatworks_engine_prefill_tokens", "Prompt tokens prefilled."),
    "decode_tokens": ("counter", "chatworks_engine_decode_tokens", "Tokens decoded."),
    "prefill_seconds": ("counter", "chatworks_engine_prefill_seconds", "Time spent prefilling."),
    "decode_seconds": ("counter", "chatworks_engine_decode_seconds",
                       "Time spent in decode steps."),
    "queue_seconds": ("counter", "chatworks_engine_queue_seconds",
                      "Time admitted sequences waited inside the engine."),
    "prefix_queried_tokens": ("counter", "chatworks_engine_prefix_queried_tokens",
                              "Prompt tokens looked up in the prefix cache."),
    "prefix_hit_tokens": ("counter", "chatworks_engine_prefix_hit_tokens",
                          "Prompt tokens reused from the prefix cache, not prefilled."),
}  # fmt: skip


class _EngineCollector:
    """Reads the watched engines' stats at scrape time. Rates give throughput:
    rate(decode_tokens) / rate(decode_seconds) is decode tokens/s; rate(decode_tokens) /
    rate(steps) is the mean batch size."""

    def __init__(self) -> None:
        self._engines: dict[str, object] = {}

    def watch(self, model: str, stats: object) -> None:
        self._engines[model] = stats

    def collect(self) -> Iterator[Metric]:
        kinds = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}
        families = {field: kinds[kind](name, doc, labels=["model"])
                    for field, (kind, name, doc) in ENGINE_METRICS.items()}  # fmt: skip
        for model, stats in self._engines.items():
            for field in dataclasses.fields(stats):
                families[field.name].add_metric([model], float(getattr(stats, field.name)))
        yield from families.values()


_ENGINES = _EngineCollector()
REGISTRY.register(_ENGINES)


def watch_engine(model: str, stats: object) -> None:
    """Export a native engine's `EngineStats` (a dataclass) under `model` from now on."""
    _ENGINES.watch(model, stats)


# --- Upstream providers ----------------------------------------------------------------------

UPSTREAM_REQUESTS = Counter(
    "chatworks_upstream_requests_total",
    "Calls to an upstream OpenAI-compatible provider, by outcome: ok, error, cancelled.",
    ["outcome"],
    registry=REGISTRY,
)
UPSTREAM_BREAKER_OPEN = Gauge(
    "chatworks_upstream_breaker_open",
    "1 while the upstream provider's circuit breaker is open (requests answer 503).",
    registry=REGISTRY,
)


# --- Agents: tool calls and approvals --------------------------------------------------------

TOOL_CALLS = Counter(
    "chatworks_tool_calls_total",
    "Tool calls by server (file_search for document search) and status: ok, error, invalid, "
    "blocked, denied, expired.",
    ["server", "status"],
    registry=REGISTRY,
)
TOOL_APPROVAL_WAIT = Histogram(
    "chatworks_tool_approval_wait_seconds",
    "Time from an approval request to its answer, by outcome: approved, denied, expired.",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 86400),
    registry=REGISTRY,
)


# --- Documents: ingestion, retrieval, grounded answers, embeddings ---------------------------

INGESTED_DOCUMENTS = Counter(
    "chatworks_ingest_documents_total",
    "Files ingested, by outcome: added, updated, unchanged, failed.",
    ["status"],
    registry=REGISTRY,
)
INGESTED_CHUNKS = Counter(
    "chatworks_ingest_chunks_total", "Chunks written by ingestion.", registry=REGISTRY
)
FLAGGED_CHUNKS = Counter(
    "chatworks_ingest_flagged_chunks_total",
    "Chunks flagged at ingestion as possible prompt injection.",
    registry=REGISTRY,
)
RETRIEVAL_LATENCY = Histogram(
    "chatworks_retrieval_stage_seconds",
    "Retrieval latency by stage: embed, vector, keyword, fusion, total.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RETRIEVAL_CHUNKS = Histogram(
    "chatworks_retrieval_chunks",
    "Passages a retrieval returned (0 when nothing passed the relevance floor).",
    buckets=(0, 1, 2, 3, 5, 8, 13, 20, 50),
    registry=REGISTRY,
)
RETRIEVALS = Counter(
    "chatworks_retrievals_total",
    "Retrievals by outcome: found, empty (nothing over the relevance floor).",
    ["outcome"],
    registry=REGISTRY,
)
GROUNDED_ANSWERS = Counter(
    "chatworks_grounded_answers_total",
    "Grounded questions by outcome: generated, extracted, refused.",
    ["outcome"],
    registry=REGISTRY,
)
CITATIONS_DROPPED = Counter(
    "chatworks_citations_dropped_total",
    "Citation markers a model wrote that named no source, removed from answers.",
    registry=REGISTRY,
)
MODEL_REFUSALS = Counter(
    "chatworks_model_refusals_total",
    "Grounded answers the model itself declined (sources were found and sent).",
    registry=REGISTRY,
)
OUTPUT_LEAKS = Counter(
    "chatworks_output_system_prompt_leaks_total",
    "Grounded answers that recited a long span of the system prompt (replaced by the refusal).",
    registry=REGISTRY,
)
EMBEDDING_INPUTS = Counter(
    "chatworks_embedding_inputs_total",
    "Texts embedded for /v1/embeddings (questions embedded for retrieval are timed by stage).",
    ["model"],
    registry=REGISTRY,
)
EMBEDDING_TOKENS = Counter(
    "chatworks_embedding_tokens_total", "Tokens embedded for /v1/embeddings.", ["model"],
    registry=REGISTRY,
)  # fmt: skip


# --- Classification: lab models behind /v1/classify ---------------------------------------------

CLASSIFY_PREDICTIONS = Counter(
    "chatworks_classify_predictions_total",
    "Records classified, by registered model and predicted label (a shift in the mix is drift).",
    ["model", "label"],
    registry=REGISTRY,
)
CLASSIFY_SECONDS = Histogram(
    "chatworks_classify_seconds",
    "Time to classify one request's records (model lookup and prediction, off the event loop).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)


# --- Security: authentication, limits, moderation --------------------------------------------

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
USAGE_RECORDS_LOST = Counter(
    "chatworks_usage_records_lost_total",
    "Usage records not written because the database was unavailable (served, not accounted).",
    registry=REGISTRY,
)
LIMITER_UP = Gauge(
    "chatworks_ratelimit_backend_up",
    "1 when the rate-limit backend answered its last call, 0 when it failed.",
    ["backend"],
    multiprocess_mode="livemin",
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


# --- The response cache (chatworks.cache) ----------------------------------------------------

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


# --- The service: build, readiness, the data disk, the process -------------------------------

BUILD_INFO = Gauge(
    "chatworks_build_info",
    "Always 1; the labels say which build and configuration is running.",
    ["version", "python", "provider", "model"],
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
READY = Gauge(
    "chatworks_ready",
    "1 when the check passes at scrape time: model (loaded), database (answers SELECT 1).",
    ["check"],
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
DISK_FREE = Gauge(
    "chatworks_data_disk_free_bytes",
    "Free bytes on the filesystem holding the data directory.",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
DISK_SIZE = Gauge(
    "chatworks_data_disk_size_bytes",
    "Size of the filesystem holding the data directory.",
    multiprocess_mode="livemax",
    registry=REGISTRY,
)


def set_build_info(provider: str, model: str) -> None:
    BUILD_INFO.labels(chatworks.__version__, platform.python_version(), provider, model).set(1)


# Memory, CPU and open files of this process (process_resident_memory_bytes, ...): the
# standard names every dashboard knows, which the custom registry would otherwise lack.
ProcessCollector(registry=REGISTRY)
