"""The native provider: chatworks' own model and continuous-batching engine, in process.

Covers: turning a `GenerationRequest` into prompt ids (the checkpoint's chat template for chat
requests), running it on the `Engine` - constrained by a grammar for `response_format` and
tools (`providers/structured.py`) - and turning token ids back into client-safe text with stop
strings applied, or into tool calls. Does not cover: HTTP, limits or auth (the API), the
batching policy (`chatworks.engine.scheduler`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace

import torch

from chatworks.engine import compiled, int4_kernel
from chatworks.engine.constraints import Constrainer, GrammarError, Matcher
from chatworks.engine.precision import load_for_serving
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import (
    EmptyPrompt,
    Engine,
    Finish,
    OverKVBudget,
    PromptTooLong,
    QueueFull,
    Unservable,
)
from chatworks.engine.textstream import IncrementalDetokenizer, StopMatcher
from chatworks.model import Tokenizer
from chatworks.providers.base import Delta, GenerationRequest, ProviderError, Timing, Usage
from chatworks.providers.structured import CallSplitter, plan
from chatworks.settings import Settings
from chatworks.telemetry.logging import get_logger
from chatworks.telemetry.metrics import watch_engine

log = get_logger(__name__)

# The engine's refusals, as OpenAI-style error codes (400: the request must change).
_UNSERVABLE = {
    EmptyPrompt: "empty_prompt",
    PromptTooLong: "context_length_exceeded",
    OverKVBudget: "request_too_large",
}


class NativeProvider:
    name = "native"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.max_concurrency = settings.engine_slots
        self._engine: Engine | None = None
        self._tokenizer: Tokenizer | None = None

    async def load(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        s = self.settings
        # Loaded on one thread: only the engine's thread runs parallel regions with `threads`.
        # With a second OpenMP team in the process (this thread's) the teams outnumber 2 cores,
        # libgomp stops spinning between regions, and 2-thread decode ran at half speed.
        torch.set_num_threads(1)
        model, self._tokenizer = load_for_serving(
            s.model_path, s.engine_precision, s.engine_int4_kernel
        )
        tok = self._tokenizer
        constrainer = Constrainer(tok.hf.to_str(), tok.eos_token_ids, model.cfg.vocab_size)
        compile = self._compile(model)
        self._engine = Engine(
            model,
            slots=s.engine_slots,
            max_waiting=s.max_waiting_requests,
            max_seq_len=s.engine_max_seq_len,
            threads=s.threads,
            prefill_budget=s.engine_prefill_tokens,
            constrainer=constrainer,
            prefix_cache_mb=s.engine_prefix_cache_mb,
            kv_cache_mb=s.engine_kv_cache_mb,
            compile=compile,
        ).start()
        watch_engine(s.model, self._engine.stats)
        why_not = None if compile else self._why_not_compiled(model) or "turned off"
        log.info("engine_ready", model=s.model, precision=s.engine_precision,
                 threads=s.threads, compiled=compile, not_compiled_because=why_not,
                 int4_kernel="off" if s.engine_int4_kernel is False
                 else int4_kernel.unavailable_reason() or "on")  # fmt: skip

    @staticmethod
    def _why_not_compiled(model: torch.nn.Module | None) -> str | None:
        return compiled.unavailable_reason(model is not None and compiled.integer_only(model))

    def _compile(self, model: torch.nn.Module | None = None) -> bool:
        """`engine_compile`, where unset: whether compiled blocks of `model` can run here."""
        reason = self._why_not_compiled(model)
        if self.settings.engine_compile and reason:
            raise ValueError(f"CHATWORKS_ENGINE_COMPILE=true, but {reason}")
        return self.settings.engine_compile is not False and reason is None

    @property
    def ready(self) -> bool:
        return self._engine is not None

    async def models(self) -> list[str]:
        return [self.settings.model]

    async def close(self) -> None:
        if self._engine is not None:
            await asyncio.to_thread(self._engine.stop)
            self._engine = None

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        tokenizer = self._require_loaded()[1]
        if request.messages is None:
            return tokenizer.encode(request.prompt or "")
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        return tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))

    def _matcher(self, grammar: str | None) -> Matcher | None:
        constrainer = self._require_loaded()[0].constrainer
        if grammar is None or constrainer is None:
            return None
        try:
            return constrainer.matcher(grammar)
        except GrammarError as exc:
            raise ProviderError(str(exc), status_code=400, code="invalid_schema") from exc

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        engine, tokenizer = self._require_loaded()
        try:
            structured = plan(request)
        except ValueError as exc:  # a schema llguidance cannot read
            raise ProviderError(str(exc), status_code=400, code="invalid_schema") from exc
        request = replace(request, messages=structured.messages)
        prompt = self.prompt_ids(request)
        matcher = await asyncio.to_thread(self._matcher, structured.grammar)
        params = SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop_token_ids=tokenizer.eos_token_ids,
        )
        detok = IncrementalDetokenizer(tokenizer.decode)
        stops = StopMatcher(request.stop)
        calls = CallSplitter(structured.may_call)
        completion = pending = 0  # tokens generated; of those, not yet reported in a Delta
        try:
            events = engine.stream(prompt, params, matcher)
        except QueueFull as exc:
            raise ProviderError(str(exc), status_code=503, code="overloaded") from exc
        except Unservable as exc:
            raise ProviderError(str(exc), status_code=400, code=_UNSERVABLE[type(exc)]) from exc
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Finish):
                    usage = Usage(len(prompt), event.completion_tokens, event.cached_tokens)
                    tokens = event.completion_tokens - completion + pending  # e.g. the EOS
                    text, tool_calls = calls.push(stops.flush()), calls.calls()
                    reason = "tool_calls" if tool_calls and event.reason == "stop" else event.reason
                    yield Delta(text, tokens, reason, usage, _timing(event), tool_calls)
                    return
                completion += 1
                pending += 1
                if text := calls.push(stops.push(detok.push(event))):
                    yield Delta(text, pending)
                    pending = 0
                if stops.stopped:  # closing `events` below cancels the sequence in the engine
                    yield Delta("", pending, "stop", Usage(len(prompt), completion))
                    return

    def _require_loaded(self) -> tuple[Engine, Tokenizer]:
        if self._engine is None or self._tokenizer is None:
            raise ProviderError("the model is still loading", status_code=503, code="model_loading")
        return self._engine, self._tokenizer


def _timing(finish: Finish) -> Timing | None:
    """The engine's phase times, when the sequence got as far as a first token."""
    if not (finish.admitted_ns and finish.first_token_ns):
        return None
    return Timing(finish.submitted_ns, finish.admitted_ns, finish.first_token_ns,
                  finish.finished_ns)  # fmt: skip
