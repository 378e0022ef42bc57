"""The OpenAPI schema declares every status code a route really answers, with the error body.

What follows from a route's dependencies is declared here, from the dependency tree, so a new
route cannot forget it: 401/403 wherever a key is checked, 429/503 wherever limits apply, 413
wherever a body is read, and 400 (not FastAPI's 422) for invalid input, since the error handler
answers 400 as OpenAI does. What a handler itself raises (404, 409, 415, 502, 504, the model's
503) is declared on its decorator with `errors(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from chatworks.settings import Settings


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape; every non-2xx answer has it."""

    error: ErrorDetail


_MEANING = {
    400: "Invalid request: the parameter is named in `error.param`",
    401: "Missing, unknown, revoked or expired API key",
    403: "The key lacks the scope, or may not use this model or collection",
    404: "Not found (also what another tenant's collection or document answers)",
    409: "The name is taken",
    413: "Request body, message or prompt too large",
    415: "Unsupported file type",
    424: "A registered MCP server the request names could not be reached",
    429: "Rate limit or token budget reached; see `Retry-After` and `x-ratelimit-*`",
    502: "The upstream model server failed",
    503: "Overloaded, still loading, or the rate limiter is unavailable; see `Retry-After`",
    504: "The upstream model server timed out",
}

GENERATION_ERRORS = (404, 502, 503, 504)  # model not served; upstream; loading or at capacity


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route decorator: these codes, with the error body."""
    return {code: {"model": ErrorResponse, "description": _MEANING[code]} for code in codes}


def streamed(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`errors(*codes)`, and a 200 that may also be Server-Sent Events (`stream: true`)."""
    # Any JSON per event (chunks, then a final object or an in-band error), then [DONE].
    events = {"schema": {"description": "one event's data: a JSON object, or [DONE] last"}}
    return {200: {"content": {"text/event-stream": events}}, **errors(*codes)}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def dependency_calls(route: APIRoute) -> Iterator[Callable[..., Any]]:
    """Every dependency a route runs, nested ones included."""
    return _calls(route.dependant)


def required_scope(route: APIRoute) -> str | None:
    """The scope a route's dependencies ask for (None: open to anyone)."""
    return next((call.scope for call in dependency_calls(route) if hasattr(call, "scope")), None)


def implied_codes(route: APIRoute) -> set[int]:
    """The codes a route answers because of its dependencies and body."""
    codes = set()
    if required_scope(route) is not None:
        codes |= {401, 403}
    if any(getattr(call, "limited", False) for call in dependency_calls(route)):
        codes |= {429, 503}
    if route.body_field is not None:
        codes |= {400, 413}
    elif route.dependant.query_params:  # path parameters are plain strings: never invalid
        codes.add(400)
    return codes


def _cap_max_tokens(schemas: dict[str, Any], limit: int) -> None:
    """State the configured `max_tokens` limit, which the service enforces with a 400."""
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        properties = schemas.get(name, {}).get("properties", {})
        for field in ("max_tokens", "max_completion_tokens"):
            for branch in properties.get(field, {}).get("anyOf", []):
                if branch.get("type") == "integer":
                    branch["maximum"] = limit


def declare_errors(app: FastAPI, routers: Iterable[APIRouter], settings: Settings) -> None:
    """Add the implied codes and the required scope (as an OpenAPI security requirement) to
    every route of `routers`, replace FastAPI's 422 by the 400 really answered, and state the
    configured `max_tokens` limit."""
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            for code, spec in errors(*implied_codes(route)).items():
                route.responses.setdefault(code, spec)
            if (scope := required_scope(route)) is not None:
                route.openapi_extra = {"security": [{"apiKey": [scope]}]}

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)  # fmt: skip
            for operations in spec["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            components = spec.setdefault("components", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.get("schemas", {}).pop(unused, None)
            _cap_max_tokens(components.get("schemas", {}), settings.max_tokens_limit)
            # The role list of a requirement is the scope (OpenAPI 3.1 allows roles here).
            components["securitySchemes"] = {"apiKey": {
                "type": "http", "scheme": "bearer",
                "description": "An API key (`chatworks keys create`; `X-API-Key` works too), or an "
                               "OIDC/JWT bearer token when `CHATWORKS_OIDC_JWKS` is set",
            }}  # fmt: skip
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = schema
