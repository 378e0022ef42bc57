"""Usage per key, model and UTC day: counted once per request when its lease is released
(api/quota.py), read by `GET /v1/usage` and `chatworks usage`.

Rows are added to, never overwritten, so replicas sharing the database count correctly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatworks.storage.counters import add_to_row
from chatworks.storage.models import UsageDailyRow as Row


@dataclass(frozen=True)
class DayUsage:
    key_id: str
    model: str
    day: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def record(session: Session, key_id: str, model: str, prompt: int, completion: int,
           day: str | None = None) -> None:  # fmt: skip
    """Add one request and its tokens to the (key, model, day) row."""
    row = {"key_id": key_id, "model": model, "day": day or today()}
    counts = {"requests": 1, "prompt_tokens": prompt, "completion_tokens": completion}
    add_to_row(session, Row, row, counts)


def query(session: Session, key_id: str | None, days: int) -> list[DayUsage]:
    """The last `days` UTC days (today included), of one key or (None) of every key."""
    since = datetime.now(UTC).date() - timedelta(days=max(days, 1) - 1)
    q = select(Row).where(Row.day >= since.isoformat())
    if key_id is not None:
        q = q.where(Row.key_id == key_id)
    rows = session.scalars(q.order_by(Row.day.desc(), Row.key_id, Row.model))
    return [DayUsage(r.key_id, r.model, r.day, r.requests, r.prompt_tokens, r.completion_tokens)
            for r in rows]  # fmt: skip
