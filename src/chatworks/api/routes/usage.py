"""`GET /v1/usage`: requests and tokens per key, model and UTC day. A key sees its own usage;
admins (and everyone when auth is off) see every key's, or one key's with `key_id`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from chatworks.api.auth import require
from chatworks.api.errors import APIError
from chatworks.api.schemas import UsageDayOut, UsageList
from chatworks.api.service import Service, get_service
from chatworks.security.principal import Principal
from chatworks.storage import usage

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage", response_model=UsageList)
async def get_usage(
    days: int = Query(30, ge=1, le=366, description="UTC days back, today included"),
    key_id: str | None = Query(None, max_length=32, description="One key (admins only)"),
    service: Service = Depends(get_service),
    principal: Principal = Depends(require("chat")),
) -> UsageList:
    if not principal.sees_all:
        if key_id not in (None, principal.actor):
            raise APIError(403, "only admins can read another key's usage", "insufficient_scope",
                           "key_id")  # fmt: skip
        key_id = principal.actor

    rows = await service.db.read(lambda session: usage.query(session, key_id, days))
    return UsageList(data=[UsageDayOut(**vars(r), total_tokens=r.total_tokens) for r in rows])
