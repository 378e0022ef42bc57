"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chatworks.api.service import Service, get_service
from chatworks.telemetry.metrics import REGISTRY

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(service: Service = Depends(get_service)) -> JSONResponse:
    """Ready to generate: the model is loaded. 503 while loading or if loading failed."""
    ready = service.provider.ready
    body = {
        "status": "ready" if ready else "loading",
        "provider": service.provider.name,
        "model": service.settings.model,
    }
    if service.load_error:
        body.update(status="failed", error=service.load_error)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
