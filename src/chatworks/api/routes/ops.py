"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from chatworks.api.service import Service, get_service
from chatworks.telemetry.metrics import REGISTRY

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


def _database_error(service: Service) -> str | None:
    try:
        with service.library.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; say which
        return f"{type(exc).__name__}: {exc}"
    return None


@router.get("/readyz")
async def readyz(service: Service = Depends(get_service)) -> JSONResponse:
    """Ready to serve: the model is loaded and the database answers. 503 otherwise."""
    db_error = await asyncio.to_thread(_database_error, service)
    ready = service.provider.ready and db_error is None
    body = {
        "status": "ready" if ready else "loading",
        "provider": service.provider.name,
        "model": service.settings.model,
        "database": "ok" if db_error is None else db_error,
    }
    if service.load_error or db_error:
        body.update(status="failed", error=service.load_error or db_error)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
