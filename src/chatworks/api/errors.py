"""OpenAI-shaped errors: `{"error": {"message", "type", "code", "param"}}` with the right status.

Every failure path ends here, so clients (the `openai` library included) always get a body they
can parse, and nothing ever shows a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from chatworks.api.schemas import UNSUPPORTED_PARAMS
from chatworks.providers.base import ProviderError
from chatworks.security.principal import AccessDenied
from chatworks.telemetry import metrics
from chatworks.telemetry.logging import get_logger

log = get_logger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


class APIError(Exception):
    def __init__(
        self,
        status_code: int,
        message: str,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status_code, self.message, self.code = status_code, message, code
        self.param, self.headers = param, headers


def error_body(status_code: int, message: str, code: str, param: str | None = None) -> dict:
    kind = _TYPES.get(status_code, "server_error" if status_code >= 500 else "api_error")
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}


def error_response(exc: APIError) -> JSONResponse:
    metrics.ERRORS.labels(str(exc.status_code), exc.code).inc()
    return JSONResponse(
        error_body(exc.status_code, exc.message, exc.code, exc.param),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def from_provider_error(exc: ProviderError) -> APIError:
    retry = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return APIError(exc.status_code, str(exc), exc.code, headers=retry)


def _allowed_methods(routes: Iterable[BaseRoute], path: str) -> str:
    """Every method some route answers at `path`: Starlette's own `Allow` names only the first
    route that matched, but GET and POST on one path are two routes here."""
    methods = {m for r in routes if isinstance(r, Route) and r.path_regex.match(path)
               for m in r.methods or ()}  # fmt: skip
    return ", ".join(sorted(methods))


def _disk_full(exc: OperationalError | InterfaceError) -> bool:
    """SQLite's "database or disk is full", Postgres' "No space left on device"."""
    text = str(exc.orig).lower()
    return "disk is full" in text or "no space left" in text


def install_error_handlers(
    app: FastAPI, routes: Iterable[BaseRoute], retry_after_s: int = 2
) -> None:
    """`routes`: the app's routes, so a 405 can list every method of its path; `retry_after_s`
    is what a 503 for an unreachable database tells the client to wait."""
    routes = list(routes)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(AccessDenied)
    async def _denied(_: Request, exc: AccessDenied) -> JSONResponse:
        metrics.AUTH_FAILURES.labels(exc.code).inc()
        return error_response(APIError(403, exc.message, exc.code, exc.param))

    @app.exception_handler(ProviderError)
    async def _provider_error(_: Request, exc: ProviderError) -> JSONResponse:
        return error_response(from_provider_error(exc))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_down(_: Request, exc: OperationalError | InterfaceError) -> JSONResponse:
        # The database refused, dropped the connection or has no room: the request may succeed
        # once that is fixed (the pool checks connections before use), so not a server bug.
        retry = {"Retry-After": str(retry_after_s)}
        # On the request's server span: the trace alone then says what the driver said.
        trace.get_current_span().record_exception(exc)
        if _disk_full(exc):
            log.error("disk_full", error=type(exc.orig).__name__)
            return error_response(APIError(507, "the server's disk is full; nothing was stored",
                                           "insufficient_storage", headers=retry))  # fmt: skip
        log.warning("database_unavailable", error=type(exc.orig).__name__)
        return error_response(APIError(503, "the database is unavailable; retry shortly",
                                       "database_unavailable", headers=retry))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI answers 400 for malformed parameters; name the first offending one.
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        if loc and loc[0] in UNSUPPORTED_PARAMS:
            message = f"{message}: this server does not support other values"
        if param:
            message = f"{param}: {message}"
        return error_response(APIError(400, message, "invalid_request", param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: a 405 says which methods the resource has
            headers["Allow"] = _allowed_methods(routes, request.url.path)
        return error_response(APIError(exc.status_code, str(exc.detail), code, headers=headers))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=type(exc).__name__)
        return error_response(APIError(500, "internal error", "internal_error"))
