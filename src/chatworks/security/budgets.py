"""Token budgets per key and period (UTC day or month), kept in the database so they outlive
restarts and every replica sees the same total. Usage is counted for every key (`key_usage`,
shown by `chatworks keys list` and `GET /v1/keys`); the budget only applies to a key with one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatworks.storage.counters import add_to_row
from chatworks.storage.models import KeyUsageRow

Period = Literal["day", "month"]


def period_of(now: datetime, period: Period) -> tuple[str, int]:
    """The label of the period holding `now` ("2026-12-02", "2026-12"), seconds to its end."""
    now = now.astimezone(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end, label = start + timedelta(days=1), start.strftime("%Y-%m-%d")
    else:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        label = start.strftime("%Y-%m")
    return label, max(1, int((end - now).total_seconds()))


@dataclass(frozen=True)
class Usage:
    period: str
    tokens: int = 0
    requests: int = 0


def usage(session: Session, key_id: str, label: str) -> Usage:
    # Columns, not the ORM object: replicas update the row behind this session's back.
    query = select(KeyUsageRow.tokens, KeyUsageRow.requests).where(
        KeyUsageRow.key_id == key_id, KeyUsageRow.period == label
    )
    row = session.execute(query).first()
    return Usage(label, row.tokens, row.requests) if row else Usage(label)


def current_usage(session: Session, key_id: str, period: Period) -> Usage:
    """What the key used in the budget period running now."""
    return usage(session, key_id, period_of(datetime.now(UTC), period)[0])


def add_usage(session: Session, key_id: str, label: str, tokens: int) -> None:
    """Add one request and its tokens to the key's period."""
    add_to_row(session, KeyUsageRow, {"key_id": key_id, "period": label},
               {"tokens": tokens, "requests": 1})  # fmt: skip
