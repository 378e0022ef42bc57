"""Writing audit entries from the API: the caller and their address come from the `Principal`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from chatworks.api.service import Service
from chatworks.security import audit

if TYPE_CHECKING:  # auth.py audits refused admin calls, so it imports this module
    from chatworks.api.auth import Principal


def _write(service: Service, principal: Principal, action: str, resource: str | None,
           outcome: str, detail: dict[str, Any]) -> None:  # fmt: skip
    with service.library.session() as session, session.begin():
        audit.record(
            session, actor=principal.actor, action=action, resource=resource, outcome=outcome,
            client=principal.client, detail=detail,
        )  # fmt: skip


async def audited(
    service: Service,
    principal: Principal,
    action: str,
    resource: str | None = None,
    outcome: str = "ok",
    **detail: Any,
) -> None:
    await asyncio.to_thread(_write, service, principal, action, resource, outcome, detail)
