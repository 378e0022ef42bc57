"""The FastAPI application factory.

The model loads in the background after start-up, so `/healthz` answers at once and `/readyz`
says 503 until generation is possible (as llama.cpp's `/health` does while loading).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import chatworks
from chatworks.api import mcp_server
from chatworks.api.auth import authenticate_request
from chatworks.api.cache import CacheHit, CacheWriter, hit_response
from chatworks.api.errors import install_error_handlers
from chatworks.api.middleware import BodySizeLimit, LocalOnly, RequestContext, SecurityHeaders
from chatworks.api.openapi import declare_errors
from chatworks.api.quota import LeaseSettler
from chatworks.api.routes import (
    admin,
    classify,
    documents,
    moderation,
    ops,
    responses,
    suggestions,
    usage,
)
from chatworks.api.routes import openai as openai_routes
from chatworks.api.service import Service
from chatworks.providers.base import Provider
from chatworks.providers.registry import create_provider
from chatworks.rag import injection
from chatworks.security import given_names, pii_ner
from chatworks.security.exposure import keyless_loopback
from chatworks.settings import Settings, get_settings
from chatworks.telemetry import multiprocess
from chatworks.telemetry.logging import get_logger
from chatworks.telemetry.metrics import set_build_info
from chatworks.telemetry.tracing import configure_tracing, shutdown_tracing, untraced

log = get_logger(__name__)

STATIC_DIR = files("chatworks.web") / "static"
# Every API route lives in one of these (the auth-matrix test walks them all).
ROUTERS = (
    openai_routes.router,
    responses.router,
    moderation.router,
    classify.router,
    documents.router,
    suggestions.router,
    admin.router,
    ops.router,
    usage.router,
)


async def _load(service: Service) -> None:
    try:
        # The PII recognizers' NER model first (1-2 s, more on a busy machine): the guard,
        # content logs and the audit log need it, and the server is not ready without it.
        await asyncio.to_thread(pii_ner.analyzer)
        await asyncio.to_thread(given_names.names)  # the name rules' list, likewise
        await asyncio.to_thread(injection.preload)  # the injection guard's MiniLM, likewise
        await service.provider.load()
    except Exception as exc:  # keep serving /healthz and /readyz, which reports the failure
        service.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("model_load_failed", error=service.load_error)


def create_app(settings: Settings | None = None, provider: Provider | None = None) -> FastAPI:
    settings = settings or get_settings()
    service = Service.create(settings, provider or create_provider(settings))
    configure_tracing()  # OTEL_* variables; a no-op tracer when they ask for nothing
    set_build_info(service.provider.name, settings.model)

    tools_server = mcp_server.build(service)
    mcp_endpoint = mcp_server.McpEndpoint(service, tools_server, authenticate_request)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load(service))
        async with tools_server.session_manager.run():  # /mcp's sessions
            yield
        loading.cancel()
        await service.provider.close()
        await service.limiter.close()
        if service.cache is not None:
            await service.cache.close()
        shutdown_tracing()
        multiprocess.worker_exited()

    app = FastAPI(
        title="chatworks",
        version=chatworks.__version__,
        description="OpenAI-compatible chat API with a web UI.",
        lifespan=lifespan,
        telemetry={"exclude": untraced},  # FastAPI's own OTel server spans (telemetry/tracing.py)
    )
    app.state.service = service
    for router in ROUTERS:
        app.include_router(router)
    routes = [route for router in ROUTERS for route in router.routes]
    install_error_handlers(app, routes, settings.retry_after_s)
    app.add_exception_handler(CacheHit, hit_response)
    declare_errors(app, ROUTERS, settings)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.mount("/mcp", mcp_endpoint, name="mcp")  # chatworks as an MCP server (api/mcp_server.py)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"))

    # Added innermost first: every request gets an id and a log line, even one rejected for
    # size; a request's lease is released after its response has ended; a cacheable
    # response is stored once its body is complete.
    app.add_middleware(CacheWriter)
    app.add_middleware(LeaseSettler)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if keyless_loopback(settings):
        app.add_middleware(LocalOnly)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestContext)
    return app
