"""ASGI middleware: request ids, trace context for logs, access logs, HTTP metrics and the
request body size limit.

Written as plain ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched
and a client disconnect still reaches the endpoint.
"""

from __future__ import annotations

import time
import uuid

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatworks.api.errors import APIError, error_response
from chatworks.telemetry import metrics
from chatworks.telemetry.logging import get_logger

log = get_logger("chatworks.http")

REQUEST_ID_HEADER = b"x-request-id"


def _route_label(scope: Scope) -> str:
    """The route template (`/v1/models`), never the raw path, to keep label cardinality low."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return route.path
    return "/static" if scope.get("path", "").startswith("/static/") else "unmatched"


def _carrier(scope: Scope) -> dict[str, str]:
    """Request headers for the W3C propagator (`traceparent`, `tracestate`, `baggage`)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


class RequestContext:
    """Binds a request id (taken from `X-Request-ID` or made up), returns it in the response,
    logs one line per request and counts it in the HTTP metrics."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(REQUEST_ID_HEADER, b"").decode("latin-1")
        request_id = incoming[:128] if incoming.isprintable() and incoming else uuid.uuid4().hex
        started = time.perf_counter()
        status = 500
        size_in = headers.get(b"content-length", b"")
        metrics.HTTP_IN_FLIGHT.inc()
        # FastAPI's own telemetry opens the server span (the client's `traceparent` as parent)
        # when tracing is configured. When it is not, the client's context is still made
        # current, so log lines carry the client's trace id.
        token = None
        if not trace.get_current_span().get_span_context().is_valid:
            token = otel_context.attach(propagate.extract(_carrier(scope)))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.body":
                sent_bytes.append(len(message.get("body", b"")))
            elif message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode("latin-1")),
                ]
                metrics.HTTP_LATENCY.labels(_route_label(scope), scope["method"]).observe(
                    time.perf_counter() - started
                )
            await send(message)

        sent_bytes: list[int] = []
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "http_request",
                method=scope["method"],
                route=_route_label(scope),
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            if token is not None:
                otel_context.detach(token)
            metrics.HTTP_IN_FLIGHT.dec()
            route = _route_label(scope)
            metrics.HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            if size_in.isdigit():
                metrics.HTTP_REQUEST_SIZE.labels(route).observe(int(size_in))
            metrics.HTTP_RESPONSE_SIZE.labels(route).observe(sum(sent_bytes))
            structlog.contextvars.unbind_contextvars("request_id")


class BodySizeLimit:
    """Rejects request bodies over `max_bytes` with 413, by header or while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)

    def _too_large(self) -> APIError:
        return APIError(413, f"request body exceeds {self.max_bytes} bytes", "request_too_large")

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(self._too_large())(scope, receive, send)
