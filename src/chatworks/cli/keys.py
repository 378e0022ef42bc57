"""API keys: `keys create`, `keys list`, `keys revoke` (the same as `/v1/keys`, without a server:
straight on the database the server uses, so a key works at once on every replica)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

import typer
from sqlalchemy.orm import Session

from chatworks.cli.shared import console, settings_from_flags

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

ACTOR = "cli"  # who the audit log names for keys changed from the command line


@contextmanager
def _session() -> Iterator[Session]:
    from chatworks.storage import open_database

    with Session(open_database(settings_from_flags())) as session, session.begin():
        yield session


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _model_limit(text: str) -> tuple[str, dict[str, int]]:
    """`MODEL:rpm=10,tpm=5000,max_parallel=2` -> (MODEL, {...})."""
    model, _, spec = text.rpartition(":")
    if not model or not spec:
        raise typer.BadParameter(f"{text!r}: expected MODEL:rpm=N,tpm=N,max_parallel=N")
    rates = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name not in ("rpm", "tpm", "max_parallel") or not value.isdigit() or int(value) < 1:
            raise typer.BadParameter(f"{part!r}: expected rpm=N, tpm=N or max_parallel=N")
        rates[name] = int(value)
    return model, rates


def _expiry(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)  # without a zone: UTC (see keys.create_key)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected a date (2027-01-31) or ISO time") from None


def create(
    name: Annotated[str, typer.Option(help="A label for the key (who or what uses it).")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: chat, documents, tools, admin.")],
    owner: Annotated[
        str | None,
        typer.Option(help="Tenant. Keys with one owner share documents; default: the key."),
    ] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated models it may use.")] = None,
    collections: Annotated[
        str | None, typer.Option(help="Comma-separated collections it may use.")
    ] = None,
    tools: Annotated[
        str | None,
        typer.Option(
            help='MCP tools its agents may call: "server:tool" patterns, e.g. '
            '"notes:*,files:read_*" (needs the tools scope; default: any registered).'
        ),
    ] = None,
    auto_approve: Annotated[
        str | None,
        typer.Option(help="Write tools (patterns) it may run without a person's approval."),
    ] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    max_parallel: Annotated[int | None, typer.Option(min=1, help="Requests in flight.")] = None,
    model_limit: Annotated[
        list[str] | None,
        typer.Option(help="Per model, repeatable: MODEL:rpm=N,tpm=N,max_parallel=N."),
    ] = None,
    budget_tokens: Annotated[int | None, typer.Option(min=1, help="Tokens per period.")] = None,
    budget_period: Annotated[str, typer.Option(help="day or month (UTC).")] = "month",
    expires: Annotated[
        str | None, typer.Option(help="Expiry: a date (UTC midnight) or an ISO time.")
    ] = None,
) -> None:
    """Create a key. Its secret is printed once, as the last line: only its hash is stored."""
    from chatworks.security import audit, keys
    from chatworks.security.limits import KeyLimits, Rate

    if budget_period not in ("day", "month"):
        raise typer.BadParameter("--budget-period must be day or month")
    period: Literal["day", "month"] = "day" if budget_period == "day" else "month"
    per_model = dict(_model_limit(m) for m in model_limit or [])
    limits = KeyLimits(
        key=Rate(rpm=rpm, tpm=tpm, max_parallel=max_parallel),
        models={m: Rate(**r) for m, r in per_model.items()},
        budget_tokens=budget_tokens, budget_period=period,
    )  # fmt: skip
    try:
        with _session() as session:
            key, secret = keys.create_key(
                session, name, _csv(scopes) or [], owner=owner, models=_csv(models),
                collections=_csv(collections), tools=_csv(tools),
                auto_approve=_csv(auto_approve) or (), limits=limits, expires_at=_expiry(expires),
            )  # fmt: skip
            audit.record(session, actor=ACTOR, action="key.create", resource=key.id,
                         detail={"name": name, "scopes": list(key.scopes)})  # fmt: skip
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"created key [bold]{key.id}[/] ({key.name}, {','.join(key.scopes)}, "
                  f"owner {key.owner}); its secret, shown only now:", highlight=False)  # fmt: skip
    print(secret)  # plain print: never wrapped or styled, so scripts can read the last line


def list_keys() -> None:
    """List keys (never their secrets), one per line: id, name, state, scopes, owner, limits,
    tokens used in the current budget period, expiry."""
    from chatworks.security import budgets, keys

    with _session() as session:
        found = [(k, budgets.current_usage(session, k.id, k.limits.budget_period))
                 for k in keys.list_keys(session)]  # fmt: skip
    for k, used in found:
        expires = f"expires {k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else ""
        spent = f"used {used.tokens} tokens in {used.period}"
        fields = (k.id, k.name, k.prefix, k.state(), ",".join(k.scopes), f"owner={k.owner}",
                  k.limits.describe(), spent, expires)  # fmt: skip
        typer.echo("\t".join(f for f in fields if f))  # tab-separated: for cut and awk


def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (see keys list).")]) -> None:
    """Revoke a key: every server refuses it from its next request on."""
    from chatworks.security import audit, keys

    with _session() as session:
        key = keys.revoke_key(session, key_id)
        audit.record(session, actor=ACTOR, action="key.revoke", resource=key_id,
                     outcome="ok" if key else "not_found")  # fmt: skip
    if key is None:
        console.print(f"[red]error:[/] no key {key_id}", highlight=False)
        raise typer.Exit(1)
    console.print(f"revoked {key.id} ({key.name})")


app.command()(create)
app.command("list")(list_keys)
app.command()(revoke)
