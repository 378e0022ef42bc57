"""Admin endpoints: API keys (`/v1/keys`) and the audit log (`/v1/audit`). Every call needs the
`admin` scope and is itself audited (reading the log too: who looked is part of the record)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from chatworks.api.auth import require
from chatworks.api.errors import APIError
from chatworks.api.openapi import errors
from chatworks.api.schemas import AuditList, KeyCreate, KeyCreated, KeyOut, RateIn
from chatworks.api.service import Service, get_service
from chatworks.security import audit, budgets, keys
from chatworks.security.limits import KeyLimits, Rate
from chatworks.security.principal import Principal

router = APIRouter(prefix="/v1", tags=["admin"])
admin_scope = Depends(require("admin"))


def key_out(key: keys.ApiKey, usage: budgets.Usage) -> KeyOut:
    return KeyOut(
        usage=usage,
        id=key.id, name=key.name, prefix=key.prefix, owner=key.owner, scopes=list(key.scopes),
        models=list(key.models) if key.models is not None else None,
        collections=list(key.collections) if key.collections is not None else None,
        tools=list(key.tools) if key.tools is not None else None,
        auto_approve=list(key.auto_approve),
        limits=key.limits.to_json(), state=key.state(), created_at=key.created_at,
        expires_at=key.expires_at, revoked_at=key.revoked_at,
    )  # fmt: skip


def _rate(r: RateIn) -> Rate:
    return Rate(rpm=r.rpm, tpm=r.tpm, max_parallel=r.max_parallel)


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_key(
    body: KeyCreate, service: Service = Depends(get_service), principal: Principal = admin_scope
) -> KeyCreated:
    """Create a key. The response holds its secret, the only time it is ever shown."""
    limits = KeyLimits(
        key=_rate(body), models={m: _rate(r) for m, r in body.model_limits.items()},
        budget_tokens=body.budget_tokens, budget_period=body.budget_period,
    )  # fmt: skip

    key, secret = await service.db.write(lambda session: keys.create_key(
        session, body.name, body.scopes, owner=body.owner, models=body.models,
        collections=body.collections, tools=body.tools, auto_approve=body.auto_approve or (),
        limits=limits, expires_at=body.expires_at,
    ))  # fmt: skip
    await service.audit(principal, "key.create", key.id, name=key.name, scopes=list(key.scopes))
    fresh = budgets.Usage(budgets.period_of(datetime.now(UTC), key.limits.budget_period)[0])
    return KeyCreated(**key_out(key, fresh).model_dump(), secret=secret)


@router.get("/keys")
async def list_keys(
    service: Service = Depends(get_service), principal: Principal = admin_scope
) -> dict:
    def load(session: Session) -> list[KeyOut]:
        return [
            key_out(k, budgets.current_usage(session, k.id, k.limits.budget_period))
            for k in keys.list_keys(session)
        ]

    found = await service.db.read(load)
    await service.audit(principal, "key.list")
    return {"object": "list", "data": found}


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=errors(404))
async def revoke_key(
    key_id: str, service: Service = Depends(get_service), principal: Principal = admin_scope
) -> KeyOut:
    """Revoke a key: it fails with 401 from the next request on, on every replica."""

    def revoke(session: Session) -> KeyOut | None:
        key = keys.revoke_key(session, key_id)
        if key is None:
            return None
        return key_out(key, budgets.current_usage(session, key.id, key.limits.budget_period))

    revoked = await service.db.write(revoke)
    await service.audit(principal, "key.revoke", key_id, "ok" if revoked else "not_found")
    if revoked is None:
        raise APIError(404, f"key '{key_id}' not found", "key_not_found")
    return revoked


@router.get("/audit", response_model=AuditList)
async def audit_log(
    service: Service = Depends(get_service),
    principal: Principal = admin_scope,
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(  # bounded: a larger int overflows the database's integer
        None, ge=1, le=2**63 - 1, description="Entries older than this id (paging)"
    ),
    action: str | None = Query(None, description="Only this action, e.g. key.create"),
    response_id: str | None = Query(
        None, max_length=64, description="Only the tool calls of this response (Responses API)"
    ),
) -> AuditList:
    """The audit log, newest first."""

    found = await service.db.read(
        lambda session: audit.entries(
            session, limit=limit, before=before, action=action, response_id=response_id
        )
    )
    await service.audit(principal, "audit.read")
    return AuditList(data=found)
