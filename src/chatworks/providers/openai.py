"""Forward generation to any OpenAI-compatible upstream (vLLM, llama.cpp server, Ollama, or
another chatworks).

The official `openai` client does the HTTP: timeouts (`CHATWORKS_UPSTREAM_TIMEOUT_S`, for
connecting and for each read, so a stream may run longer but never stall longer), and bounded
retries on connection errors and 429/5xx before the first byte. Upstream errors keep their
status and message so the caller sees what the upstream said. A circuit breaker
(`providers/breaker.py`) stops sending to an upstream that keeps failing: 503 with
`Retry-After` at once, rather than every request waiting out timeouts and retries. Each call
is a CLIENT span whose context goes upstream in the W3C `traceparent` header, so the
upstream's own spans join the caller's trace.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import openai
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from chatworks.providers.base import (
    Delta,
    GenerationRequest,
    Message,
    ProviderError,
    ResponseFormat,
    ToolCall,
    Usage,
)
from chatworks.providers.breaker import CircuitBreaker
from chatworks.settings import Settings
from chatworks.telemetry import metrics
from chatworks.telemetry import tracing as t

MODELS_TTL_S = 30.0


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Settings):
        self._settings = settings
        # The upstream does its own batching and queueing; this only bounds our open requests.
        self.max_concurrency = settings.max_running_requests or 64
        self._client = openai.AsyncOpenAI(
            base_url=settings.upstream_url,
            api_key=settings.upstream_key,
            timeout=settings.upstream_timeout_s,
            max_retries=settings.upstream_retries,
        )
        self._models: tuple[float, list[str]] = (-MODELS_TTL_S, [])
        self.breaker = CircuitBreaker(
            settings.upstream_breaker_failures, settings.upstream_breaker_open_s
        )
        self._started = False

    def _failed(self, exc: openai.APIError) -> ProviderError:
        """Counts an upstream failure (not a 4xx: that is the request's fault) for the breaker."""
        error = _as_provider_error(exc)
        if error.status_code >= 500:
            self.breaker.failed()
        else:
            self.breaker.succeeded()  # the upstream answered: it is up
        return error

    @property
    def ready(self) -> bool:
        # Not before load(): the server loads its own parts (the PII recognizers) first, and
        # /readyz must not send traffic to a process still busy with them.
        return self._started

    async def load(self) -> None:
        """Nothing to load: the upstream owns the model."""
        self._started = True

    async def models(self) -> list[str]:
        """The upstream's models, cached briefly: every request checks its model against them."""
        fetched_at, cached = self._models
        if time.monotonic() - fetched_at < MODELS_TTL_S:
            return cached
        self.breaker.admit()
        try:
            page = await self._client.models.list()
        except openai.APIError as exc:
            raise self._failed(exc) from exc
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.succeeded()
        self._models = (time.monotonic(), [m.id for m in page.data])
        return self._models[1]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        span = t.tracer().start_span("upstream", kind=SpanKind.CLIENT)
        t.set_attributes(span, {t.PROVIDER: "openai", t.REQUEST_MODEL: request.model,
                                "server.address": str(self._client.base_url)})  # fmt: skip
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        outcome = "cancelled"  # unless it finishes or fails
        try:
            async for delta in self._stream(request, headers):
                if delta.finish_reason is not None:
                    outcome = "ok"
                    t.set_attributes(span, {t.FINISH_REASONS: (delta.finish_reason,)})
                yield delta
        except Exception as exc:
            outcome = "error"
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            metrics.UPSTREAM_REQUESTS.labels(outcome).inc()
            span.end()

    async def _stream(
        self, request: GenerationRequest, headers: dict[str, str]
    ) -> AsyncIterator[Delta]:
        common = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop) or None,
            "seed": request.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
            "extra_headers": headers or None,
        }
        common = {k: v for k, v in common.items() if v is not None}  # omit, don't send null
        if request.response_format is not None:
            common["response_format"] = _response_format(request.response_format)
        self.breaker.admit()
        try:
            if request.messages is not None:
                messages = [_message(m) for m in request.messages]
                upstream = await self._client.chat.completions.create(
                    messages=messages, **common, **_tool_fields(request)
                )
            else:
                upstream = await self._client.completions.create(prompt=request.prompt, **common)
        except openai.APIError as exc:
            raise self._failed(exc) from exc
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.succeeded()  # the upstream answered; a later break counts on its own

        finish, usage, generated = "stop", None, 0
        calls: dict[int, dict[str, str]] = {}  # streamed call pieces, by index
        try:
            async for chunk in upstream:
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    text = _choice_text(choice)
                    if text:
                        generated += 1  # one piece per upstream chunk; exact counts come in usage
                        yield Delta(text=text, tokens=1)
                    _gather_calls(choice, calls)
                    if choice.finish_reason:
                        finish = choice.finish_reason
                        if finish not in ("length", "tool_calls"):
                            finish = "stop"
        except openai.APIError as exc:
            raise self._failed(exc) from exc
        finally:
            await upstream.close()  # closing the upstream stream cancels it there too
        usage = usage or Usage(0, generated)
        extra = max(usage.completion_tokens - generated, 0)
        tool_calls = tuple(ToolCall(c["id"], c["name"], c["arguments"])
                           for _, c in sorted(calls.items()))  # fmt: skip
        yield Delta(tokens=extra, finish_reason=finish, usage=usage, tool_calls=tool_calls)

    async def close(self) -> None:
        await self._client.close()


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [c.openai() for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec = {"name": "response", "schema": fmt.schema, "strict": True}
    return {"type": "json_schema", "json_schema": spec}


def _tool_fields(request: GenerationRequest) -> dict[str, Any]:
    if not request.tools:
        return {}
    choice = request.tool_choice
    if choice not in ("auto", "required", "none"):
        choice = {"type": "function", "function": {"name": choice}}
    tools = [
        {"type": "function",
         "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in request.tools
    ]  # fmt: skip
    return {"tools": tools, "tool_choice": choice,
            "parallel_tool_calls": request.parallel_tool_calls}  # fmt: skip


def _gather_calls(choice, calls: dict[int, dict[str, str]]) -> None:
    """Upstream streams a call as pieces: id and name first, then the arguments in parts."""
    delta = getattr(choice, "delta", None)
    for piece in getattr(delta, "tool_calls", None) or ():
        call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
        call["id"] = piece.id or call["id"]
        if piece.function is not None:
            call["name"] = piece.function.name or call["name"]
            call["arguments"] += piece.function.arguments or ""


def _choice_text(choice) -> str:
    delta = getattr(choice, "delta", None)  # chat chunks carry a delta, completions a text
    return (delta.content if delta is not None else choice.text) or ""


def _as_provider_error(exc: openai.APIError) -> ProviderError:
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = body.get("error", body) if isinstance(body, dict) else {}
        message = detail.get("message") if isinstance(detail, dict) else None
        return ProviderError(
            f"upstream: {message or exc.message}", exc.status_code, "upstream_error"
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("upstream timed out", 504, "upstream_timeout")
    return ProviderError(f"upstream unreachable: {exc}", 502, "upstream_unreachable")
