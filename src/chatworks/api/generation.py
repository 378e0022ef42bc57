"""Running one generation for the API: admission, metering, streaming and cancellation.

The order matters: a request is admitted (or turned away with 503), then the provider is asked
for its first piece *before* the response starts, so a bad prompt still gets a proper status
code rather than a 200 followed by an error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from chatworks.api.admission import AdmissionGate, Ticket
from chatworks.api.quota import Lease
from chatworks.providers.base import Delta, GenerationRequest, Provider, Timing, Usage
from chatworks.security import pii
from chatworks.telemetry import metrics
from chatworks.telemetry import tracing as t
from chatworks.telemetry.logging import get_logger

log = get_logger("chatworks.generation")

_DISCONNECT_POLL_S = 0.25


@dataclass
class Generation:
    """An admitted, started generation: its first delta is already in hand."""

    first: Delta
    rest: AsyncGenerator[Delta, None]
    ticket: Ticket

    async def deltas(self) -> AsyncIterator[Delta]:
        yield self.first
        async for delta in self.rest:
            yield delta

    async def close(self) -> None:
        """Cancels generation if it is still running and frees the slot. Safe to call twice."""
        try:
            await self.rest.aclose()
        finally:
            self.ticket.release()


def _generation_span(provider: Provider, request: GenerationRequest) -> Span:
    """The GenAI client span of one generation (`chat MODEL`), a child of the current span.
    Started, not made current: it ends in `metered`, after the handler has returned."""
    operation = "chat" if request.messages is not None else "text_completion"
    span = t.tracer().start_span(f"{operation} {request.model}")
    t.set_attributes(span, {
        t.OPERATION: operation, t.PROVIDER: provider.name, t.REQUEST_MODEL: request.model,
        t.MAX_TOKENS: request.max_tokens, t.TEMPERATURE: request.temperature,
        t.TOP_P: request.top_p,
    })  # fmt: skip
    return span


async def start_generation(
    provider: Provider,
    gate: AdmissionGate,
    request: GenerationRequest,
    lease: Lease,
    log_content: bool = False,
) -> Generation:
    """`log_content` (CHATWORKS_LOG_CONTENT): log the prompt and the answer, PII redacted."""
    arrived = time.perf_counter()
    span = _generation_span(provider, request)
    try:
        with t.tracer().start_as_current_span("admission", context=trace.set_span_in_context(span)):
            ticket = await gate.admit()
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(StatusCode.ERROR, type(exc).__name__)
        span.end()
        raise
    rest = metered(provider.stream(request), request, arrived, lease, log_content, span)
    try:
        # Current while the provider starts, so an upstream call made now is its child.
        with trace.use_span(span, end_on_exit=False):
            first = await anext(rest)
    except BaseException:
        await rest.aclose()
        ticket.release()
        raise
    return Generation(first, rest, ticket)


def _prompt_text(request: GenerationRequest) -> str | list[dict[str, str]]:
    if request.messages is None:
        return pii.redact_log(request.prompt or "")
    return [{"role": m.role, "content": pii.redact_log(m.content)} for m in request.messages]


def _phases(span: Span, model: str, timing: Timing | None) -> None:
    """Queue, prefill and decode as child spans of the generation, from the provider's times
    (the engine runs in its own thread and only records them), and their histograms."""
    if timing is None:
        return
    metrics.PREFILL_TIME.labels(model).observe((timing.first_token_ns - timing.admitted_ns) / 1e9)
    metrics.DECODE_TIME.labels(model).observe((timing.finished_ns - timing.first_token_ns) / 1e9)
    if not span.is_recording():
        return
    parent = trace.set_span_in_context(span)
    for name, start, end in (
        ("queue", timing.submitted_ns, timing.admitted_ns),
        ("prefill", timing.admitted_ns, timing.first_token_ns),
        ("decode", timing.first_token_ns, timing.finished_ns),
    ):
        t.tracer().start_span(name, context=parent, start_time=start).end(end_time=end)


def _end_generation(
    span: Span, finish: str, usage: Usage, generated: int, content: dict[str, object]
) -> None:
    t.set_attributes(span, {
        t.FINISH_REASONS: (finish,), t.INPUT_TOKENS: usage.prompt_tokens,
        t.OUTPUT_TOKENS: usage.completion_tokens or generated,
    })  # fmt: skip
    if content:  # CHATWORKS_LOG_CONTENT: the same redacted text as the log line
        t.set_attributes(span, {
            t.INPUT_MESSAGES: json.dumps(content["prompt"]),
            t.OUTPUT_MESSAGES: json.dumps([{"role": "assistant", "content": content["answer"]}]),
        })  # fmt: skip
    if finish == "error":
        span.set_status(StatusCode.ERROR)
    span.end()


async def metered(
    deltas: AsyncGenerator[Delta, None],
    request: GenerationRequest,
    arrived: float,
    lease: Lease,
    log_content: bool = False,
    span: Span = trace.INVALID_SPAN,
) -> AsyncGenerator[Delta, None]:
    """Passes deltas through, recording latency, token and outcome metrics and one log line,
    charges the tokens to the caller's lease (its tokens-per-minute and budget), and ends the
    generation's span. With `log_content`, the line also holds the prompt and the answer, PII
    redacted."""
    model = request.model
    finish, usage, timing = "cancelled", Usage(), None
    answer: list[str] = []
    first_at = last_at = None
    generated = 0  # what a stream cut short still cost: its final usage never arrives
    try:
        async with contextlib.aclosing(deltas):
            async for delta in deltas:
                now = time.perf_counter()
                if first_at is None:
                    first_at = now
                    metrics.TIME_TO_FIRST_TOKEN.labels(model).observe(now - arrived)
                elif delta.text:
                    metrics.INTER_TOKEN_LATENCY.labels(model).observe(now - last_at)
                if delta.text:
                    last_at = now
                    if log_content:
                        answer.append(delta.text)
                if delta.tokens:
                    generated += delta.tokens
                    metrics.GENERATION_TOKENS.labels(model).inc(delta.tokens)
                if delta.finish_reason is not None:
                    finish, usage = delta.finish_reason, delta.usage or usage
                    timing = delta.timing
                    metrics.PROMPT_TOKENS.labels(model).inc(usage.prompt_tokens)
                    metrics.PROMPT_TOKENS_PER_REQUEST.labels(model).observe(usage.prompt_tokens)
                    metrics.GENERATION_TOKENS_PER_REQUEST.labels(model).observe(
                        usage.completion_tokens
                    )
                yield delta
    except Exception:
        finish = "error"
        raise
    finally:
        lease.add_tokens(usage.prompt_tokens, usage.completion_tokens or generated)
        elapsed = time.perf_counter() - arrived
        metrics.E2E_LATENCY.labels(model).observe(elapsed)
        metrics.REQUEST_SUCCESS.labels(model, finish).inc()
        content = {}
        if log_content:  # redacted as a whole: a value split across two deltas is whole here
            content = {"prompt": _prompt_text(request), "answer": pii.redact_log("".join(answer))}
        _phases(span, model, timing)
        _end_generation(span, finish, usage, generated, content)
        log.info(
            "generation",
            model=model,
            finish_reason=finish,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            ttft_s=round(first_at - arrived, 4) if first_at else None,
            e2e_s=round(elapsed, 4),
            **content,
        )


async def collect(generation: Generation, http_request: Request) -> tuple[str, Delta]:
    """Reads a whole generation for a non-streaming response, cancelling it if the client leaves.

    Starlette does not cancel a plain endpoint when its client disconnects, so we watch."""

    async def read_all() -> tuple[str, Delta]:
        parts, last = [], generation.first
        async for delta in generation.deltas():
            parts.append(delta.text)
            last = delta
        return "".join(parts), last

    reader = asyncio.ensure_future(read_all())
    try:
        while True:
            done, _ = await asyncio.wait({reader}, timeout=_DISCONNECT_POLL_S)
            if done:
                return reader.result()
            if await http_request.is_disconnected():
                reader.cancel()
                raise asyncio.CancelledError("client disconnected")
    finally:
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        await generation.close()


class Closable(Protocol):
    async def close(self) -> None: ...


class GenerationResponse(StreamingResponse):
    """Server-Sent Events that always close their generation (a `Generation`, or a grounded
    run): on completion, on error and when the client disconnects (Starlette cancels the body
    iterator then)."""

    def __init__(self, body: AsyncIterator[bytes], generation: Closable):
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._generation = generation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._generation.close()
