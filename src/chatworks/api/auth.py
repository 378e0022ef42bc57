"""Authentication and scopes as FastAPI dependencies: routers declare what they need
(`Depends(require("documents"))`) and handlers that care about the caller take the `Principal`.

A key arrives as `Authorization: Bearer KEY` (what the `openai` client sends) or `X-API-Key`.
With auth off (loopback by default) every caller is the anonymous operator, who sees everything
and creates what the default owner owns, exactly as before keys existed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastapi import Depends, Request

from chatworks.api.audit import audited
from chatworks.api.errors import APIError
from chatworks.api.service import Service, get_service
from chatworks.security import keys
from chatworks.security.oidc import InvalidToken, looks_like_jwt
from chatworks.security.scopes import Scope, allows
from chatworks.storage.models import DEFAULT_OWNER
from chatworks.telemetry import metrics
from chatworks.telemetry.tracing import tracer


@dataclass(frozen=True)
class Principal:
    key: keys.ApiKey | None  # None: auth is off
    client: str | None = None  # the peer address, for the audit log

    @property
    def actor(self) -> str:
        return self.key.id if self.key else "anonymous"

    @property
    def owner(self) -> str:
        """Who owns what this caller creates."""
        return self.key.owner if self.key else DEFAULT_OWNER

    @property
    def sees_all(self) -> bool:
        return self.key is None or "admin" in self.key.scopes

    @property
    def owner_filter(self) -> str | None:
        """The owner every query of this caller is restricted to; None for admins."""
        return None if self.sees_all else self.owner

    def require(self, scope: Scope) -> None:
        """403 unless this caller's key has `scope` (auth off: every scope)."""
        if self.key is not None and not allows(self.key.scopes, scope):
            raise _forbidden(f"this key lacks the '{scope}' scope", "insufficient_scope")

    def check_model(self, model: str | None) -> None:
        allowed = self.key.models if self.key else None
        if allowed is not None and model not in allowed:
            raise _forbidden(f"this key may not use model '{model}'", "model_not_allowed", "model")

    def may_use_collection(self, name: str) -> bool:
        allowed = self.key.collections if self.key else None
        return allowed is None or name in allowed

    def check_collection(self, name: str) -> None:
        if not self.may_use_collection(name):
            raise _forbidden(f"this key may not use collection '{name}'", "collection_not_allowed")


def _forbidden(message: str, code: str, param: str | None = None) -> APIError:
    metrics.AUTH_FAILURES.labels(code).inc()
    return APIError(403, message, code, param)


def _presented(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def _unauthorized(message: str, code: str) -> APIError:
    metrics.AUTH_FAILURES.labels(code).inc()
    return APIError(401, message, code, headers={"WWW-Authenticate": "Bearer"})


def _lookup(service: Service, secret: str) -> keys.ApiKey | None:
    with service.library.session() as session:
        return keys.find_key(session, secret)


async def authenticate(request: Request, service: Service = Depends(get_service)) -> Principal:
    with tracer().start_as_current_span("auth"):
        return await _authenticate(request, service)


async def _authenticate(request: Request, service: Service) -> Principal:
    client = request.client.host if request.client else None
    if not service.auth_required:
        return Principal(None, client)
    secret = _presented(request)
    if secret is None:
        raise _unauthorized(
            "missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            "missing_api_key",
        )
    if service.tokens is not None and looks_like_jwt(secret):  # never a `cw-` key
        try:
            return Principal(await asyncio.to_thread(service.tokens.verify, secret), client)
        except InvalidToken as exc:
            raise _unauthorized(str(exc), exc.code) from None
    key = keys.bootstrap_key(service.settings.admin_key, secret)
    if key is None:
        key = await asyncio.to_thread(_lookup, service, secret)
    if key is None:
        raise _unauthorized("invalid API key", "invalid_api_key")
    state = key.state()
    if state != "active":
        raise _unauthorized(f"this API key is {state}", f"key_{state}")
    return Principal(key, client)


@cache  # one function per scope: FastAPI runs a dependency once per request by identity
def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: the authenticated caller, if their key has `scope` (else 403)."""

    async def dependency(
        request: Request,
        principal: Principal = Depends(authenticate),
        service: Service = Depends(get_service),
    ) -> Principal:
        try:
            principal.require(scope)
        except APIError:
            if scope == "admin":  # a valid key reaching for admin powers: worth a record
                await audited(service, principal, "admin.denied", request.url.path, "denied")
            raise
        return principal

    dependency.__name__ = f"require_{scope}"
    dependency.scope = scope  # read by api/openapi.py and the auth-matrix test
    return dependency
