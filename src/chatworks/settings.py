"""The one place that reads chatworks' configuration: variables `CHATWORKS_*` and `.env`.

Everything else receives a `Settings` object. The only other environment chatworks reads is
other tools' own variables, where those tools define them: `OTEL_*` (telemetry/tracing.py),
`PROMETHEUS_MULTIPROC_DIR` (telemetry/multiprocess.py), `CXX` (engine/compiled.py, as
Inductor does; engine/int4_kernel.py), `XDG_CACHE_HOME` (engine/int4_kernel.py) and the
`HF_HUB_OFFLINE` that model loading sets. `chatworks serve --workers` hands its settings to
the worker processes as `CHATWORKS_*` variables.

A setting declared with `shaping(...)` changes what an answer says (the model, generation
defaults, retrieval and grounding, the input guard): the response cache keys on every such
setting (`cache.config_fingerprint`), so replicas that differ in one never share an entry.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
# Asymmetric only: with HS256 a JWKS's public key could be used as a shared secret.
SigningAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


SHAPES_ANSWERS = "shapes_answers"


def shaping(default: Any, **kwargs: Any) -> Any:
    """A field (`pydantic.Field`) whose value changes what an answer says."""
    return Field(default, json_schema_extra={SHAPES_ANSWERS: True}, **kwargs)


def answer_shaping_fields() -> list[str]:
    """The settings declared with `shaping`."""
    return [name for name, info in Settings.model_fields.items()
            if (info.json_schema_extra or {}).get(SHAPES_ANSWERS)]  # fmt: skip


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHATWORKS_", env_file=".env", extra="ignore")

    # Service
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    data_dir: Path = Path("./data")
    workers: int = Field(
        1, ge=1, le=64, description="uvicorn worker processes; metrics use multiprocess mode"
    )
    shutdown_timeout_s: float = Field(
        10.0, ge=0, description="on SIGTERM, how long in-flight requests may finish before "
        "they are cancelled (keep it under the platform's kill deadline)",
    )  # fmt: skip

    # Generation
    provider: Literal["native", "transformers", "openai", "scripted"] = shaping(
        "native", description="scripted: replies from CHATWORKS_SCRIPT_PATH, no model (tests, UI)"
    )
    model: str = shaping(
        DEFAULT_MODEL_ID, description="Model id served, or a local path to load (served by name)"
    )
    model_path: Path | None = shaping(
        None, description="GGUF file, HF directory or chatworks run; default: bundled SmolLM2"
    )
    threads: int = Field(1, ge=1, le=256, description="torch intra-op threads (1 is fastest here)")
    engine_slots: int = Field(
        32, ge=1, le=256, description="Sequences the native engine batches, at most"
    )
    engine_kv_cache_mb: float = Field(
        2048, gt=0, description="Memory for the batch's keys and values: requests are admitted "
        "while their prompts and max_tokens fit",
    )  # fmt: skip
    engine_precision: Literal["fp32", "bf16", "int8", "int4"] = shaping(
        "int4", description="Native engine weights: int4 decodes fastest on CPU, fp32 is exact"
    )
    engine_int4_kernel: bool | None = shaping(
        None, description="int4/int8 decode rows on the integer-dot kernel (int8 activations, "
        "engine/int4_kernel.py), built with the C++ compiler once; false: torch's int4 kernel "
        "(bf16 activations); default: where it builds",
    )  # fmt: skip
    engine_compile: bool | None = Field(
        None, description="Run the native model's blocks compiled (torch.compile, C++): faster "
        "decode after seconds of compiling at start; default: where a C++ compiler and torch's "
        "AVX-512 kernels are found",
    )  # fmt: skip
    engine_max_seq_len: int = Field(4096, ge=16, description="Longest prompt + answer, in tokens")
    engine_prefill_tokens: int = Field(
        512, ge=16, description="Prompt tokens per prefill step: a longer prompt goes in chunks"
    )
    engine_prefix_cache_mb: float = Field(
        256, ge=0, description="Memory for finished sequences' KV, reused by prompts that share "
        "their start (0: off)",
    )  # fmt: skip
    script_path: Path | None = shaping(None, description="JSON rules for the scripted provider")
    upstream_url: str = shaping("http://127.0.0.1:8080/v1")
    upstream_key: str = "none"
    upstream_timeout_s: float = Field(120.0, gt=0)
    upstream_retries: int = Field(2, ge=0, le=10)
    upstream_breaker_failures: int = Field(
        5, ge=1, description="Consecutive upstream failures that open the circuit breaker"
    )
    upstream_breaker_open_s: float = Field(
        30.0, gt=0, description="Open breaker: answer 503 this long, then let one probe through"
    )

    # Backpressure
    max_running_requests: int | None = Field(
        None, ge=1, description="Generations at once; default: what the provider can run"
    )
    max_waiting_requests: int = Field(16, ge=0)
    queue_timeout_s: float = Field(30.0, gt=0)
    retry_after_s: int = Field(2, ge=1)

    # Request limits
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_messages: int = Field(256, ge=1)
    max_message_chars: int = Field(32_000, ge=1)
    max_total_chars: int = Field(100_000, ge=1)
    max_tokens_limit: int = Field(4096, ge=1, description="Largest max_tokens a request may ask")
    default_max_tokens: int = shaping(512, ge=1)

    # Documents and retrieval
    database_url: str | None = Field(
        None, description="SQLAlchemy URL (postgresql+psycopg://...); default: data_dir SQLite"
    )
    embedding_model: str = shaping(
        "all-minilm-l6-v2", description="Embedding model id, or a sentence-transformers directory"
    )
    embedding_batch_size: int = Field(32, ge=1, le=4096)
    # MiniLM reads at most 256 tokens including [CLS] and [SEP]: longer chunks would be truncated.
    chunk_tokens: int = shaping(200, ge=16, le=254, description="Chunk size in embedding tokens")
    chunk_overlap_tokens: int = shaping(32, ge=0, le=128)
    max_upload_bytes: int = Field(20_000_000, ge=1024, description="Largest file to ingest")
    allowed_file_types: list[str] = Field(
        ["txt", "md", "html", "pdf", "docx"], description="File types ingestion accepts"
    )
    spark_master: str = Field(
        "local[2]", description="Spark master of `chatworks spark ...`: local[N] or a cluster URL"
    )

    # Grounded answers
    rag_top_k: int = shaping(5, ge=1, le=50, description="Passages given to the model")
    rag_candidates: int = shaping(20, ge=1, le=200, description="Hits per search before fusion")
    rag_keyword_weight: float = shaping(1.0, ge=0)
    rag_vector_weight: float = shaping(1.0, ge=0)
    rag_mmr_lambda: float = shaping(0.8, ge=0, le=1, description="1.0 turns de-duplication off")
    rag_min_similarity: float | None = shaping(
        None, ge=-1, le=1, description="Below this best cosine similarity, refuse; unset: "
        "calibrated per collection on off-topic probe questions (rag/answerability.py)",
    )  # fmt: skip
    rag_answerability: bool = shaping(
        True, description="Refuse when the answerability model says the sentence windows do "
        "not answer the question (needs focus windows; docs/evals.md)",
    )  # fmt: skip
    rag_quarantine: bool = shaping(
        True, description="Never retrieve chunks flagged as instruction-like at ingestion; "
        "false: retrieve them, marked in the prompt as data to treat strictly",
    )  # fmt: skip
    rag_context_tokens: int = shaping(1500, ge=64, description="Token budget for the sources")
    rag_focus_windows: int = shaping(
        3, ge=0, le=20, description="Give the model this many best sentence windows instead of "
        "whole passages (0: whole passages); 3 measured best (docs/evals.md)",
    )  # fmt: skip
    rag_answer: Literal["extract", "generate"] = shaping(
        "extract", description="extract: quote the best window (measured best with small models); "
        "generate: the model answers from the windows",
    )  # fmt: skip
    rag_focus_neighbours: int = shaping(2, ge=0, le=10, description="Sentences around each one")

    # Security (docs/security/)
    auth: Literal["auto", "required", "off"] = Field(
        "auto", description="auto: off on a loopback bind (make run stays keyless), else required"
    )
    insecure: bool = Field(
        False, description="Serve without keys on a non-loopback address (serve --insecure)"
    )
    admin_key: str | None = Field(
        None, min_length=16, description="Bootstrap admin key, accepted besides the stored keys"
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db: rate limits shared by all replicas"
    )
    oidc_jwks: str | None = Field(
        None, description="JWKS file or URL: accept OIDC/JWT bearer tokens signed by its keys"
    )
    oidc_issuer: str | None = Field(None, description="Required `iss` of tokens")
    oidc_audience: str | None = Field(None, description="Required `aud` of tokens")
    oidc_algorithms: list[SigningAlgorithm] = Field(
        ["RS256", "ES256"], description="Signature algorithms accepted (asymmetric only)"
    )
    oidc_scopes_claim: str = Field("scope", description="Claim holding the scopes")
    oidc_scope_prefix: str = Field("", description="Prefix of chatworks scopes in it")
    oidc_owner_claim: str = Field("sub", description="Claim naming the tenant (owner)")
    redis_fail_open: bool = Field(
        True, description="Redis down: serve without limits (true) or answer 503 (false)"
    )
    # Flag (count and log, change nothing) by default: a false positive then costs nobody an
    # answer, and what the model sees is what the user sent. block/redact are the operator's call.
    guard_prompt_injection: Literal["flag", "block", "off"] = shaping(
        "flag", description="Chat input judged a prompt injection: flag, block (400), or off"
    )
    guard_pii: Literal["flag", "block", "redact", "off"] = shaping(
        "flag", description="Personal data or secrets in chat input: flag, block (400), "
        "redact (replaced by [EMAIL]-style markers before the model sees it), or off",
    )  # fmt: skip
    log_content: bool = Field(
        False, description="Log prompts and answers (PII redacted); off by default"
    )

    # Agents: the Responses API's tool loop (docs/agents.md)
    approval_timeout_s: float = Field(
        600.0, gt=0, description="An unanswered tool approval expires (as denied) after this"
    )
    tool_timeout_s: float = Field(30.0, gt=0, description="Longest one MCP tool call may take")
    agent_max_steps: int = Field(
        8, ge=1, le=64, description="Generations in one response of the Responses API, at most"
    )
    agent_max_seconds: float = Field(
        300.0, gt=0, description="Wall time of one response's tool loop, at most"
    )

    # Lab models served by /v1/classify (chatworks lab train registers them)
    lab_store: Path = Field(
        Path("mlruns"), description="MLflow store whose registry /v1/classify loads models from"
    )
    classify_alias: str = Field(
        "champion", description="Alias served when a request names a lab model without @alias"
    )

    # Response cache (docs/security/README.md#response-cache)
    cache: bool = Field(
        True, description="Cache answers to deterministic requests (temperature 0); off: false"
    )
    cache_ttl_s: float = Field(3600.0, gt=0, description="How long a cached answer is served")
    cache_max_entries: int = Field(1024, ge=1, description="In-process cache size (LRU)")

    @model_validator(mode="after")
    def _model_named_by_path(self) -> Settings:
        """`model=runs/NAME` (or a .gguf file, an HF directory) loads that path as `NAME`."""
        if self.provider == "scripted" and "model" not in self.model_fields_set:
            self.model = "scripted"  # not the default model's name: no model answers
        path = Path(self.model).expanduser()
        if self.model_path is not None or self.provider in ("openai", "scripted"):
            return self
        if path.exists():
            path = path.resolve()
            self.model_path, self.model = path, path.stem if path.is_file() else path.name
        elif (
            self.model.startswith(("/", ".", "~"))
            or self.model.endswith(".gguf")
            or (len(path.parts) > 1 and path.parent.is_dir())
        ):  # meant as a path (runs/typo): serving the default model under that name would hide it
            raise ValueError(f"model path {self.model!r} does not exist")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
