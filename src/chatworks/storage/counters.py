"""Counter rows that several replicas add to at once (budget periods, daily usage)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


def add_to_row(
    session: Session, row: type, keys: dict[str, object], amounts: dict[str, int]
) -> None:
    """Adds `amounts` to the columns of the row that `keys` names, creating it if missing.
    UPDATE first, so concurrent replicas add and never overwrite; a replica that loses the
    race to INSERT the row adds to the winner's."""
    where = [getattr(row, column) == value for column, value in keys.items()]
    increment = (
        update(row)
        .where(*where)
        .values({column: getattr(row, column) + amount for column, amount in amounts.items()})
    )
    if session.execute(increment).rowcount:
        return
    try:
        with session.begin_nested():
            session.add(row(**keys, **amounts))
    except IntegrityError:  # another replica inserted the row first
        session.execute(increment)
