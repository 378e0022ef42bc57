"""Stored responses and tool approvals, in the SQL database (shared by replicas, kept over
restarts).

A response is kept for `GET /v1/responses/{id}` and for continuing with
`previous_response_id`: its body (as returned) and the state a continuation needs (the model's
conversation, the tools, the taint, the tools a person approved for the conversation). Every
lookup is by tenant: another tenant's response is "not found".

An approval moves once from `pending` to `approved`, `denied` or `expired`, by a conditional
UPDATE, so of two concurrent answers exactly one decides. The request that decided `approved`
runs the call and writes its `result`; any later answer to the same approval (a retried resume)
finds that result and reuses it. So an approved write runs exactly once: at most once always,
and once unless the process dies between claiming and running, when the call's outcome is
unknown and is reported as such rather than run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, select, true, update
from sqlalchemy.orm import Session

from chatworks.storage.models import ApprovalRow, ResponseRow, as_utc

Status = Literal["pending", "approved", "denied", "expired"]


@dataclass(frozen=True)
class StoredResponse:
    id: str
    owner: str
    body: dict[str, Any]
    state: dict[str, Any]


def _owned(column: Any, owner: str | None) -> Any:
    return column == owner if owner is not None else true()


def save_response(
    session: Session, body: dict[str, Any], state: dict[str, Any], *, owner: str, key_id: str,
    previous_id: str | None,
) -> None:  # fmt: skip
    session.merge(ResponseRow(id=body["id"], owner=owner, key_id=key_id,
                              previous_id=previous_id, body=body, state=state))  # fmt: skip


def load_response(session: Session, response_id: str, owner: str | None) -> StoredResponse | None:
    row = session.scalar(select(ResponseRow).where(ResponseRow.id == response_id,
                                                   _owned(ResponseRow.owner, owner)))  # fmt: skip
    return StoredResponse(row.id, row.owner, row.body, row.state) if row else None


def delete_response(session: Session, response_id: str, owner: str | None) -> bool:
    query = delete(ResponseRow).where(ResponseRow.id == response_id,
                                      _owned(ResponseRow.owner, owner))  # fmt: skip
    return session.execute(query).rowcount > 0


@dataclass(frozen=True)
class Approval:
    id: str
    response_id: str
    server: str
    tool: str
    arguments: str
    status: Status
    created_at: datetime
    decided_by: str | None = None
    reason: str | None = None
    result: dict[str, Any] | None = None


def _approval(row: ApprovalRow) -> Approval:
    return Approval(row.id, row.response_id, row.server, row.tool, row.arguments, row.status,
                    as_utc(row.created_at), row.decided_by, row.reason, row.result)  # fmt: skip


def add_approval(
    session: Session, approval_id: str, response_id: str, owner: str, server: str, tool: str,
    arguments: str, timeout_s: float,
) -> None:  # fmt: skip
    now = datetime.now(UTC)
    session.add(ApprovalRow(
        id=approval_id, response_id=response_id, owner=owner, server=server, tool=tool,
        arguments=arguments, status="pending", created_at=now,
        expires_at=now + timedelta(seconds=timeout_s),
    ))  # fmt: skip


@dataclass(frozen=True)
class Decision:
    approval: Approval
    decided_now: bool  # this answer moved it out of pending (the one that may run the call)


def decide(
    session: Session, approval_id: str, owner: str | None, *, approve: bool, by: str,
    reason: str | None,
) -> Decision | None:  # fmt: skip
    """Answer a pending approval (fail closed: one past its time expires instead). None when
    the tenant has no such approval. Commit before running the call it approves."""
    found = _owned(ApprovalRow.owner, owner)
    row = session.scalar(select(ApprovalRow).where(ApprovalRow.id == approval_id, found))
    if row is None:
        return None
    pending = update(ApprovalRow).where(ApprovalRow.id == approval_id,
                                        ApprovalRow.status == "pending")  # fmt: skip
    decided = False
    if row.status == "pending" and as_utc(row.expires_at) <= datetime.now(UTC):
        session.execute(pending.values(status="expired", reason="no answer in time"))
    else:
        status = "approved" if approve else "denied"
        changed = session.execute(pending.values(status=status, decided_by=by, reason=reason))
        decided = changed.rowcount == 1
    session.refresh(row)
    return Decision(_approval(row), decided)


def record_result(session: Session, approval_id: str, result: dict[str, Any]) -> None:
    session.execute(update(ApprovalRow).where(ApprovalRow.id == approval_id,
                                              ApprovalRow.result.is_(None))
                    .values(result=result))  # fmt: skip


def get_approval(session: Session, approval_id: str) -> Approval | None:
    row = session.get(ApprovalRow, approval_id)
    return _approval(row) if row else None
