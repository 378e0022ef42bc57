"""Per-key limits as a FastAPI dependency: a request that passes gets a `Lease` (a held
parallel slot, the x-ratelimit-* headers), one that does not gets 429 with `Retry-After`.

The lease outlives the handler: a stream keeps its slot until its last byte, so `LeaseSettler`
(ASGI middleware) adds the headers when the response starts and releases the lease, with the
tokens the generation reported, when the response has ended, whatever the way it ended.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from starlette.types import Message, Receive, Scope, Send

from chatworks.api.access import string_in_body
from chatworks.api.auth import require
from chatworks.api.errors import APIError
from chatworks.api.middleware import HttpMiddleware
from chatworks.api.schemas import MODERATION_MODEL
from chatworks.api.service import Service, get_service
from chatworks.security import budgets, keys
from chatworks.security.limits import Bucket, Limiter, LimiterUnavailable, buckets_for
from chatworks.security.oidc import TOKEN_ID_PREFIX
from chatworks.security.principal import Principal
from chatworks.security.scopes import Scope as KeyScope
from chatworks.storage import usage
from chatworks.telemetry import metrics
from chatworks.telemetry.logging import get_logger
from chatworks.telemetry.tracing import tracer

log = get_logger(__name__)

ModelOf = Callable[[Request, Service], Awaitable[str | None]]


@dataclass
class Lease:
    """What one admitted request holds until its response ends."""

    limiter: Limiter | None = None
    buckets: list[Bucket] = field(default_factory=list)
    key_id: str | None = None  # None: nothing to count (auth off, bootstrap admin)
    period: str | None = None  # the budget period the usage goes to, e.g. "2026-12"
    headers: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    released: bool = False
    # Who and what the request's usage is recorded under (storage/usage.py); None: not counted.
    usage_key: str | None = None
    model: str | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_tokens(self, prompt: int, completion: int = 0) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    async def release(self, service: Service) -> None:
        if self.released:
            return
        self.released = True
        if self.limiter is not None and self.buckets:
            await self.limiter.release(self.buckets, self.id, self.tokens)
        if self.usage_key is not None or (self.key_id is not None and self.period is not None):
            await service.db.write(self._settle)

    def _settle(self, session: Session) -> None:
        """The budget period's total and the daily usage row, in one transaction."""
        if self.key_id is not None and self.period is not None:
            budgets.add_usage(session, self.key_id, self.period, self.tokens)
        if self.usage_key is not None:
            usage.record(session, self.usage_key, self.model or "-", self.prompt_tokens,
                         self.completion_tokens)  # fmt: skip


def _too_many(reason: str, message: str, retry_after_s: int, headers: dict[str, str]) -> APIError:
    metrics.RATE_LIMITED.labels(reason).inc()
    return APIError(
        429, message, f"rate_limit_{reason}",
        headers={**headers, "Retry-After": str(retry_after_s)},
    )  # fmt: skip


async def model_in_body(request: Request, _: Service) -> str | None:
    """The `model` of a JSON body."""
    return await string_in_body(request, "model")


async def served_model(_: Request, service: Service) -> str | None:
    return service.settings.model


async def moderation_model(_: Request, __: Service) -> str | None:
    """`/v1/moderations` counts against the key's limits under its own model name (so a key
    restricted with --models needs it listed, as OpenAI names its moderation models)."""
    return MODERATION_MODEL


def quota(scope: KeyScope, model_of: ModelOf) -> Callable[..., Coroutine[Any, Any, Lease]]:
    """A dependency for routes that do work: the scope, the key's model list, its token budget,
    then its rate limits (key, then key x model)."""
    required = require(scope)

    async def dependency(
        request: Request,
        principal: Principal = Depends(required),
        service: Service = Depends(get_service),
    ) -> Lease:
        with tracer().start_as_current_span("limits"):
            return await _limit(request, principal, service)

    async def _limit(request: Request, principal: Principal, service: Service) -> Lease:
        key = principal.key
        model = await model_of(request, service)
        counted = {"usage_key": principal.actor, "model": model}
        if key is None:
            return _held(request, Lease(**counted))
        principal.check_model(model)
        if key.id == keys.BOOTSTRAP_ID or key.id.startswith(TOKEN_ID_PREFIX):
            # Not stored (bootstrap key, OIDC token): usage is recorded, no budget row, no limits.
            return _held(request, Lease(**counted))
        label, period_left_s = budgets.period_of(datetime.now(UTC), key.limits.budget_period)
        budget = key.limits.budget_tokens
        if budget is not None:
            used = await service.db.read(lambda s: budgets.usage(s, key.id, label).tokens)
            if used >= budget:
                message = f"token budget of {budget} per {key.limits.budget_period} is used up"
                raise _too_many("budget", message, period_left_s, {})
        lease = Lease(service.limiter, buckets_for(key.id, key.limits, model), key.id, label,
                      **counted)  # fmt: skip
        if lease.buckets:
            try:
                verdict = await service.limiter.acquire(lease.buckets, lease.id)
            except LimiterUnavailable:
                retry = {"Retry-After": str(service.settings.retry_after_s)}
                raise APIError(
                    503, "rate limiter unavailable", "limiter_unavailable", headers=retry
                ) from None
            if not verdict.allowed:
                reason = verdict.reason or "requests"
                message = f"rate limit reached ({reason}); retry after {verdict.retry_after_s} s"
                raise _too_many(reason, message, verdict.retry_after_s, dict(verdict.headers))
            lease.headers = dict(verdict.headers)
        return _held(request, lease)

    dependency.__name__ = f"quota_{scope}"
    dependency.limited = True  # read by api/openapi.py: 429 and 503 are declared
    return dependency


def _held(request: Request, lease: Lease) -> Lease:
    """Hands the lease to `LeaseSettler`, which releases it when the response has ended."""
    request.state.lease = lease
    return lease


chat_quota = quota("chat", model_in_body)
ask_quota = quota("documents", served_model)
moderation_quota = quota("chat", moderation_model)


class LeaseSettler(HttpMiddleware):
    """Adds a lease's headers to its response and releases it once the response has ended."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            lease = state.get("lease")
            if message["type"] == "http.response.start" and lease is not None:
                extra = [(k.encode(), v.encode()) for k, v in lease.headers.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            lease = state.get("lease")
            if lease is not None:
                try:
                    await lease.release(scope["app"].state.service)
                except (OperationalError, InterfaceError) as exc:
                    # The database is down (readiness and database_unavailable say so): one line
                    # and a count per lost usage record, not a stack trace on every request.
                    metrics.USAGE_RECORDS_LOST.inc()
                    log.warning("lease_release_failed", key_id=lease.key_id,
                                error=type(exc.orig).__name__)  # fmt: skip
                except Exception:  # the response is sent: log it, never fail the request now
                    log.exception("lease_release_failed", key_id=lease.key_id)
