"""Scopes: what a key may do. `chat` generates (chat, completions, embeddings, models, the
Responses API), `documents` manages collections and asks over them, `tools` lets a key's agents
call registered MCP tools (those its tool list allows), `admin` does everything plus keys, tool
servers and audit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Scope = Literal["chat", "documents", "tools", "admin"]
SCOPES: tuple[Scope, ...] = ("chat", "documents", "tools", "admin")


def parse_scopes(values: str | Iterable[str]) -> tuple[Scope, ...]:
    """`"chat,documents"` or a list -> the scopes in canonical order; ValueError if unknown."""
    items = values.split(",") if isinstance(values, str) else list(values)
    wanted = {v.strip() for v in items if v.strip()}
    unknown = wanted - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}; use {', '.join(SCOPES)}")
    if not wanted:
        raise ValueError("a key needs at least one scope")
    return tuple(s for s in SCOPES if s in wanted)


def allows(granted: Iterable[str], needed: Scope) -> bool:
    granted = set(granted)
    return "admin" in granted or needed in granted
