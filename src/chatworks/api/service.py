"""The service behind the routes: what a request needs beyond its wire format.

One `Service` per process, built from the settings: the provider and its admission gate, the
document library, the database (`storage.db.Database`: every call off the event loop), the
rate limiter, the response cache and the OIDC token verifier. Its methods are the steps every
request pipeline shares: checking the model, validating a request against the configured
limits, the moderation guard on the caller's own text, embeddings, and the audit record. The
grounded path (`api/grounded.py`) and the routes build on them. Nothing here reads HTTP; a
refusal is an `APIError` with the status it maps to.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from fastapi import Request

from chatworks.api.admission import AdmissionGate
from chatworks.api.errors import APIError
from chatworks.api.schemas import ChatCompletionRequest, CompletionRequest
from chatworks.cache import ResponseCache, config_fingerprint, open_cache
from chatworks.lab.serving import ClassifierStore
from chatworks.providers.base import GenerationRequest, Provider
from chatworks.rag.library import Library
from chatworks.security import audit
from chatworks.security.exposure import auth_required
from chatworks.security.limits import Limiter, MemoryLimiter
from chatworks.security.moderation import Blocked, guard
from chatworks.security.oidc import TokenVerifier
from chatworks.security.principal import Principal
from chatworks.settings import Settings
from chatworks.storage.db import Database
from chatworks.telemetry import metrics
from chatworks.telemetry import tracing as t
from chatworks.telemetry.logging import get_logger

log = get_logger("chatworks.moderation")
# Flag-only verdicts judged beside the requests at most at once (each is spaCy's NER and MiniLM
# on a thread of the default pool, which the routes' other work shares).
JUDGING_AT_ONCE = 4

MAX_EMBEDDING_INPUTS = 2048  # as OpenAI's


@dataclass
class Service:
    settings: Settings
    provider: Provider
    gate: AdmissionGate
    library: Library
    db: Database
    limiter: Limiter
    auth_required: bool
    cache: ResponseCache | None = None  # None: CHATWORKS_CACHE=off
    cache_config: str = ""  # the settings that shape answers, hashed into every cache key
    tokens: TokenVerifier | None = None  # OIDC/JWT bearer tokens, when a JWKS is configured
    started_at: int = field(default_factory=lambda: int(time.time()))
    load_error: str | None = None
    _classifiers: Any = None
    _judging: set[asyncio.Task] = field(default_factory=set)  # flag-only guards under way

    @property
    def classifiers(self) -> ClassifierStore:
        """The lab models of `CHATWORKS_LAB_STORE`'s registry, loaded on first use."""
        if self._classifiers is None:
            self._classifiers = ClassifierStore(self.settings.lab_store,
                                                self.settings.classify_alias)  # fmt: skip
        return self._classifiers

    @classmethod
    def create(cls, settings: Settings, provider: Provider) -> Service:
        gate = AdmissionGate(
            model=settings.model,
            max_running=min(
                settings.max_running_requests or provider.max_concurrency, provider.max_concurrency
            ),
            max_waiting=settings.max_waiting_requests,
            queue_timeout_s=settings.queue_timeout_s,
            retry_after_s=settings.retry_after_s,
        )
        library = Library(settings)
        return cls(settings, provider, gate, library, Database(lambda: library.engine),
                   _limiter(settings), auth_required(settings), open_cache(settings),
                   config_fingerprint(settings),
                   TokenVerifier.from_settings(settings))  # fmt: skip

    # -- the model ------------------------------------------------------------------------------

    def check_ready(self) -> None:
        """503 while the model loads: a generation could not start."""
        if not self.provider.ready:
            raise APIError(
                503,
                "the model is still loading",
                "model_loading",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            )

    async def check_served(self, model: str) -> None:
        """404 unless the provider serves `model`."""
        served = await self.provider.models()
        if model not in served:
            raise APIError(
                404,
                f"model '{model}' not found; available: {', '.join(served)}",
                "model_not_found",
                "model",
            )

    async def check_model(self, model: str) -> None:
        self.check_ready()
        await self.check_served(model)

    # -- requests, validated against the configured limits -------------------------------------

    def max_tokens(self, *asked: int | None) -> int:
        value = next((v for v in asked if v is not None), self.settings.default_max_tokens)
        if value > self.settings.max_tokens_limit:
            raise APIError(
                400,
                f"max_tokens must be at most {self.settings.max_tokens_limit}",
                "invalid_max_tokens",
                "max_tokens",
            )
        return value

    def _check_text_size(self, texts: list[str]) -> None:
        s = self.settings
        if len(texts) > s.max_messages:
            raise APIError(
                413,
                f"too many messages: {len(texts)} > {s.max_messages}",
                "too_many_messages",
                "messages",
            )
        for i, text in enumerate(texts):
            if len(text) > s.max_message_chars:
                raise APIError(
                    413,
                    f"message {i} has {len(text)} characters; the limit is {s.max_message_chars}",
                    "message_too_long",
                    f"messages.{i}.content",
                )
        total = sum(map(len, texts))
        if total > s.max_total_chars:
            raise APIError(
                413,
                f"the prompt has {total} characters; the limit is {s.max_total_chars}",
                "prompt_too_long",
                "messages",
            )

    async def guard_input(self, texts: list[str]) -> list[str]:
        """The moderation guard on the caller's own text (CHATWORKS_GUARD_*): chat messages,
        completion prompts, grounded questions and agent turns all pass here, so no route can
        forget it. It runs off the event loop (regexes, n-grams, MiniLM and spaCy's NER over up
        to 100k characters: hundreds of ms for a long conversation). When neither guard can
        change the text (flag or off, the defaults), the verdicts only count and log, so the
        caller does not wait for them: they are judged beside its work."""
        s = self.settings
        changes = s.guard_prompt_injection == "block" or s.guard_pii in ("block", "redact")
        # Past JUDGING_AT_ONCE verdicts under way a request waits for its own: under sustained
        # load a backlog of them would grow without bound and crowd the worker threads.
        if changes or len(self._judging) >= JUDGING_AT_ONCE:
            return await asyncio.to_thread(self._judge, texts)
        task = asyncio.create_task(asyncio.to_thread(self._judge, texts))
        self._judging.add(task)  # a reference until done: the loop keeps only weak ones
        task.add_done_callback(self._judged)
        return texts

    def _judge(self, texts: list[str]) -> list[str]:
        s = self.settings
        try:
            guarded = guard(texts, s.guard_prompt_injection, s.guard_pii)
        except Blocked as exc:
            log.info("moderation_blocked", category=exc.category)
            raise APIError(400, str(exc), f"{exc.category}_detected") from None
        if guarded.flagged:  # categories and PII kinds only: never the text
            log.info("moderation_flagged", categories=guarded.flagged, pii=guarded.pii_kinds)
        return guarded.texts

    def _judged(self, task: asyncio.Task) -> None:
        self._judging.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("moderation_failed", error=repr(task.exception()))

    def chat_request(self, body: ChatCompletionRequest) -> GenerationRequest:
        """The request as the provider takes it, validated; not yet guarded (`guard_messages`,
        or the grounded path, which guards only the question it sends)."""
        messages = tuple(m.to_message() for m in body.messages)
        self._check_text_size([m.content for m in messages])
        return GenerationRequest(
            model=body.model,
            messages=messages,
            max_tokens=self.max_tokens(body.max_completion_tokens, body.max_tokens),
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_list(),
            seed=body.seed,
            response_format=body.response_format.to_format() if body.response_format else None,
            tools=tuple(t.to_tool() for t in body.tools or ()),
            tool_choice=body.tool_choice_name(),
            parallel_tool_calls=body.parallel_tool_calls,
        )

    async def guard_messages(self, request: GenerationRequest) -> GenerationRequest:
        """The guard on what comes from outside: the user's turns and tool results (where
        indirect injections arrive). System prompts are the operator's, assistant turns the
        model's own."""
        messages = request.messages or ()
        outside = [i for i, m in enumerate(messages) if m.role in ("user", "tool")]
        guarded = await self.guard_input([messages[i].content for i in outside])
        clean = dict(zip(outside, guarded, strict=True))
        messages = tuple(
            replace(m, content=clean[i]) if i in clean else m for i, m in enumerate(messages)
        )
        return replace(request, messages=messages)

    async def completion_request(self, body: CompletionRequest) -> GenerationRequest:
        prompt = body.prompt_text()
        self._check_text_size([prompt])
        (prompt,) = await self.guard_input([prompt])
        return GenerationRequest(
            model=body.model,
            prompt=prompt,
            max_tokens=self.max_tokens(body.max_tokens),
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_list(),
            seed=body.seed,
            response_format=body.response_format.to_format() if body.response_format else None,
        )

    # -- embeddings -----------------------------------------------------------------------------

    async def embed(self, model: str, texts: list[str]) -> tuple[np.ndarray, int]:
        """`texts` embedded by `model` (404 unless it is the library's embedder), and the
        tokens they held; traced and counted."""
        # The first call loads the embedding model: seconds that must not hold the event loop.
        context = await asyncio.to_thread(lambda: self.library.context)
        embedder = context.embedder
        if model != embedder.model_id:
            raise APIError(
                404, f"embedding model '{model}' not found; available: {embedder.model_id}",
                "model_not_found", "model",
            )  # fmt: skip
        if not texts or len(texts) > MAX_EMBEDDING_INPUTS:
            raise APIError(400, f"input must hold 1 to {MAX_EMBEDDING_INPUTS} texts",
                           "invalid_input", "input")  # fmt: skip

        def embed_and_count() -> tuple[np.ndarray, int]:
            counted = context.tokenizer.encode_batch(texts)
            return embedder.embed(texts), sum(len(encoding.ids) for encoding in counted)

        attributes = {t.OPERATION: "embeddings", t.REQUEST_MODEL: embedder.model_id}
        with t.tracer().start_as_current_span(f"embeddings {model}", attributes=attributes):
            vectors, tokens = await asyncio.to_thread(embed_and_count)
        metrics.EMBEDDING_INPUTS.labels(model).inc(len(texts))
        metrics.EMBEDDING_TOKENS.labels(model).inc(tokens)
        return vectors, tokens

    # -- the audit log --------------------------------------------------------------------------

    async def audit(
        self, principal: Principal, action: str, resource: str | None = None,
        outcome: str = "ok", **detail: Any,
    ) -> None:  # fmt: skip
        """One audit entry: who (the key, their address), what, on what, and how it ended."""
        await self.db.write(lambda session: audit.record(
            session, actor=principal.actor, action=action, resource=resource, outcome=outcome,
            client=principal.client, detail=detail,
        ))  # fmt: skip


def _limiter(settings: Settings) -> Limiter:
    if settings.redis_url:
        from chatworks.security.limits_redis import RedisLimiter

        return RedisLimiter(settings.redis_url, fail_open=settings.redis_fail_open)
    return MemoryLimiter()


def get_service(request: Request) -> Service:
    return request.app.state.service
