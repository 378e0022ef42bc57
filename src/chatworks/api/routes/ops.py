"""Operations endpoints: liveness, readiness and Prometheus metrics. No key is needed for any
of them (probes and scrapers carry none); they reveal no documents and no keys."""

from __future__ import annotations

import asyncio
import shutil

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from chatworks.api.service import Service, get_service
from chatworks.telemetry import metrics, multiprocess
from chatworks.telemetry.metrics import REGISTRY

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


async def _database_error(service: Service) -> str | None:
    try:
        await service.db.read(lambda session: session.execute(text("SELECT 1")))
    except Exception as exc:  # any failure means not ready; say which
        return f"{type(exc).__name__}: {exc}"
    return None


@router.get(
    "/readyz",
    responses={503: {"description": "Not ready: loading or failed (the body says which)"}},
)
async def readyz(service: Service = Depends(get_service)) -> JSONResponse:
    """Ready to serve: the model is loaded and the database answers. 503 otherwise.
    A failing rate-limit backend (Redis) is shown under `limits`; it makes the server not
    ready only when the limiter fails closed (it would refuse every limited request)."""
    db_error = await _database_error(service)
    limits_error = await service.limiter.problem()
    blocking = limits_error if not service.settings.redis_fail_open else None
    ready = service.provider.ready and db_error is None and blocking is None
    body = {
        "status": "ready" if ready else "loading",
        "provider": service.provider.name,
        "model": service.settings.model,
        "database": "ok" if db_error is None else db_error,
        "auth": "required" if service.auth_required else "off",
        "limits": {
            "backend": service.limiter.name,
            "status": "ok" if limits_error is None else limits_error,
            "on_failure": "open" if service.settings.redis_fail_open else "closed",
        },
    }
    if service.load_error or db_error or blocking:
        body.update(status="failed", error=service.load_error or db_error or blocking)
    return JSONResponse(body, status_code=200 if ready else 503)


async def _refresh_gauges(service: Service) -> None:
    """What is measured at scrape time: readiness checks and the data disk (alerts need them
    as series; /readyz answers a probe, not a time series)."""
    metrics.READY.labels("model").set(float(service.provider.ready))
    metrics.READY.labels("database").set(float(await _database_error(service) is None))
    data_dir = service.settings.data_dir
    if data_dir.exists():
        usage = await asyncio.to_thread(shutil.disk_usage, data_dir)
        metrics.DISK_FREE.set(usage.free)
        metrics.DISK_SIZE.set(usage.total)


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics(service: Service = Depends(get_service)) -> Response:
    """Prometheus text exposition format."""
    await _refresh_gauges(service)
    # Several workers: the sum of every worker's files, not this worker's own counters.
    registry = multiprocess.registry() if multiprocess.enabled() else REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
