"""Authentication and scopes as FastAPI dependencies: routers declare what they need
(`Depends(require("documents"))`) and handlers that care about the caller take the `Principal`
(`security/principal.py`, which knows what a key allows).

A key arrives as `Authorization: Bearer KEY` (what the `openai` client sends) or `X-API-Key`.
With auth off (loopback by default) every caller is the anonymous operator, who sees everything
and creates what the default owner owns, exactly as before keys existed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import cache
from typing import Any

from fastapi import Depends, Request

from chatworks.api.errors import APIError
from chatworks.api.service import Service, get_service
from chatworks.security import keys
from chatworks.security.oidc import InvalidToken, looks_like_jwt
from chatworks.security.principal import AccessDenied, Principal
from chatworks.security.scopes import Scope
from chatworks.telemetry import metrics
from chatworks.telemetry.tracing import tracer


def _presented(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def _unauthorized(message: str, code: str) -> APIError:
    metrics.AUTH_FAILURES.labels(code).inc()
    return APIError(401, message, code, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request, service: Service = Depends(get_service)) -> Principal:
    with tracer().start_as_current_span("auth"):
        return await authenticate_request(request, service)


async def authenticate_request(request: Request, service: Service) -> Principal:
    """The caller of `request` (401 unless auth is off or its key or token is valid)."""
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
        key = await service.db.read(lambda session: keys.find_key(session, secret))
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
        except AccessDenied:
            if scope == "admin":  # a valid key reaching for admin powers: worth a record
                await service.audit(principal, "admin.denied", request.url.path, "denied")
            raise
        return principal

    dependency.__name__ = f"require_{scope}"
    dependency.scope = scope  # read by api/openapi.py and the auth-matrix test
    return dependency
