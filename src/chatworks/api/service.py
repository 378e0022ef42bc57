"""What the routes share: settings, the provider, the admission gate, and request validation
against the configured limits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from fastapi import Request

from chatworks.api.admission import AdmissionGate
from chatworks.api.errors import APIError
from chatworks.api.schemas import ChatCompletionRequest, CompletionRequest
from chatworks.cache import ResponseCache, config_fingerprint, open_cache
from chatworks.providers.base import GenerationRequest, Provider
from chatworks.rag.library import Library
from chatworks.security.exposure import auth_required
from chatworks.security.limits import Limiter, MemoryLimiter
from chatworks.security.moderation import Blocked, guard
from chatworks.security.oidc import TokenVerifier
from chatworks.settings import Settings
from chatworks.storage import documents as docs
from chatworks.telemetry.logging import get_logger

log = get_logger("chatworks.moderation")


@dataclass
class Service:
    settings: Settings
    provider: Provider
    gate: AdmissionGate
    library: Library
    limiter: Limiter
    auth_required: bool
    cache: ResponseCache | None = None  # None: CHATWORKS_CACHE=off
    cache_config: str = ""  # the settings that shape answers, hashed into every cache key
    tokens: TokenVerifier | None = None  # OIDC/JWT bearer tokens, when a JWKS is configured
    started_at: int = field(default_factory=lambda: int(time.time()))
    load_error: str | None = None

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
        return cls(settings, provider, gate, Library(settings), _limiter(settings),
                   auth_required(settings), open_cache(settings),
                   config_fingerprint(settings),
                   TokenVerifier.from_settings(settings))  # fmt: skip

    async def check_model(self, model: str) -> None:
        if not self.provider.ready:
            raise APIError(
                503,
                "the model is still loading",
                "model_loading",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            )
        served = await self.provider.models()
        if model not in served:
            raise APIError(
                404,
                f"model '{model}' not found; available: {', '.join(served)}",
                "model_not_found",
                "model",
            )

    def require_collection(self, name: str, owner: str | None) -> None:
        """404 unless the collection exists and `owner` (None: anyone) owns it: checked before
        any retrieval work. Another tenant's collection is "not found", never "forbidden"."""
        with self.library.session() as session:
            if docs.collection_id(session, name, owner) is None:
                raise APIError(404, f"collection '{name}' not found", "collection_not_found")

    def _max_tokens(self, *asked: int | None) -> int:
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

    def guard_input(self, texts: list[str]) -> list[str]:
        """The moderation guard on the caller's own text (CHATWORKS_GUARD_*): every chat and
        completion request passes here, so no handler can forget it, and so do `/v1/ask`
        questions."""
        s = self.settings
        try:
            guarded = guard(texts, s.guard_prompt_injection, s.guard_pii)
        except Blocked as exc:
            log.info("moderation_blocked", category=exc.category)
            raise APIError(400, str(exc), f"{exc.category}_detected") from None
        if guarded.flagged:  # categories and PII kinds only: never the text
            log.info("moderation_flagged", categories=guarded.flagged, pii=guarded.pii_kinds)
        return guarded.texts

    def chat_request(self, body: ChatCompletionRequest) -> GenerationRequest:
        messages = tuple(m.to_message() for m in body.messages)
        self._check_text_size([m.content for m in messages])
        # What comes from outside: the user's turns and tool results (where indirect injections
        # arrive). System prompts are the operator's, assistant turns the model's own.
        outside = [i for i, m in enumerate(messages) if m.role in ("user", "tool")]
        guarded = self.guard_input([messages[i].content for i in outside])
        clean = dict(zip(outside, guarded, strict=True))
        messages = tuple(
            replace(m, content=clean[i]) if i in clean else m for i, m in enumerate(messages)
        )
        return GenerationRequest(
            model=body.model,
            messages=messages,
            max_tokens=self._max_tokens(body.max_completion_tokens, body.max_tokens),
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_list(),
            seed=body.seed,
            response_format=body.response_format.to_format() if body.response_format else None,
            tools=tuple(t.to_tool() for t in body.tools or ()),
            tool_choice=body.tool_choice_name(),
            parallel_tool_calls=body.parallel_tool_calls,
        )

    def completion_request(self, body: CompletionRequest) -> GenerationRequest:
        prompt = body.prompt_text()
        self._check_text_size([prompt])
        (prompt,) = self.guard_input([prompt])
        return GenerationRequest(
            model=body.model,
            prompt=prompt,
            max_tokens=self._max_tokens(body.max_tokens),
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_list(),
            seed=body.seed,
            response_format=body.response_format.to_format() if body.response_format else None,
        )


def _limiter(settings: Settings) -> Limiter:
    if settings.redis_url:
        from chatworks.security.limits_redis import RedisLimiter

        return RedisLimiter(settings.redis_url, fail_open=settings.redis_fail_open)
    return MemoryLimiter()


def get_service(request: Request) -> Service:
    return request.app.state.service
