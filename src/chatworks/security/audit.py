"""The audit log: who did what to which resource, when, from where, and how it ended.

Written for key changes, ingestion, deletion, admin calls and every tool call an agent makes
(with the response it belongs to), in the same transaction as the change when there is one.
The table is append-only (database triggers refuse UPDATE and DELETE). Entries never hold
secrets or document text: a key appears by id, a file by name, and personal data in a name (an
email in a file name) or in a tool's arguments is redacted before it is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatworks.security.pii import redact
from chatworks.storage.models import AuditRow, as_utc


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    resource: str | None
    outcome: str
    client: str | None
    detail: Mapping[str, Any]
    response_id: str | None = None


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    resource: str | None = None,
    outcome: str = "ok",
    client: str | None = None,
    detail: Mapping[str, Any] | None = None,
    response_id: str | None = None,
) -> None:
    # The client address is kept: who called is what an audit log is for.
    detail = {k: redact(v) if isinstance(v, str) else v for k, v in (detail or {}).items()}
    session.add(
        AuditRow(
            at=datetime.now(UTC), actor=actor, action=action,
            resource=redact(resource) if resource else resource,
            outcome=outcome, client=client, detail=detail, response_id=response_id,
        )
    )  # fmt: skip
    session.flush()


def entries(
    session: Session, *, limit: int = 100, before: int | None = None, action: str | None = None,
    response_id: str | None = None,
) -> list[AuditEntry]:  # fmt: skip
    """Newest first; page with `before` (an entry id)."""
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditRow.id < before)
    if action is not None:
        query = query.where(AuditRow.action == action)
    if response_id is not None:
        query = query.where(AuditRow.response_id == response_id)
    rows = session.scalars(query)
    return [AuditEntry(r.id, as_utc(r.at), r.actor, r.action, r.resource, r.outcome, r.client,
                       dict(r.detail), r.response_id) for r in rows]  # fmt: skip
