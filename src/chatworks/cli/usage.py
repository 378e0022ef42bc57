"""`chatworks usage`: requests and tokens per key, model and UTC day, read straight from the
database the server writes (the same rows as `GET /v1/usage`, for every key)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from chatworks.cli.shared import console, settings_from_flags


def usage(
    days: Annotated[int, typer.Option(min=1, max=366, help="UTC days back, today included.")] = 7,
    key: Annotated[
        str | None, typer.Option(help="Only this key id ('anonymous': auth off).")
    ] = None,
) -> None:
    """Show usage per key, model and day, newest first, with totals."""
    from sqlalchemy.orm import Session

    from chatworks.storage import open_database
    from chatworks.storage import usage as stored

    with Session(open_database(settings_from_flags())) as session:
        rows = stored.query(session, key, days)
    table = Table("day", "key", "model", "requests", "prompt tokens", "completion tokens",
                  "total tokens", title=f"usage, last {days} day(s)")  # fmt: skip
    for r in rows:
        table.add_row(r.day, r.key_id, r.model, str(r.requests), str(r.prompt_tokens),
                      str(r.completion_tokens), str(r.total_tokens))  # fmt: skip
    table.add_section()
    table.add_row("total", "", "", str(sum(r.requests for r in rows)),
                  str(sum(r.prompt_tokens for r in rows)),
                  str(sum(r.completion_tokens for r in rows)),
                  str(sum(r.total_tokens for r in rows)), style="bold")  # fmt: skip
    console.print(table)
