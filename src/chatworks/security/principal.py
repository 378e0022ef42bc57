"""Who is calling: the `Principal` of one request, and what its key lets it do.

Every rule that depends only on the key lives here: scopes, the model, collection and tool
allow-lists, the write tools its admin lets run unapproved, the tenant (owner) a caller's
queries are restricted to. A refusal is `AccessDenied` (the API
answers 403 with its code); whether a collection *exists* for the caller is a database question,
answered by the API's collection-access dependency (`api/access.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from chatworks.security import keys
from chatworks.security.scopes import Scope, allows
from chatworks.storage.models import DEFAULT_OWNER


class AccessDenied(Exception):
    """The caller is known but may not do this (HTTP 403)."""

    def __init__(self, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


@dataclass(frozen=True)
class Principal:
    key: keys.ApiKey | None  # None: auth is off
    client: str | None = None  # the peer address, for the audit log

    @property
    def actor(self) -> str:
        return self.key.id if self.key else "anonymous"

    @property
    def owner(self) -> str:
        """Who owns what this caller creates."""
        return self.key.owner if self.key else DEFAULT_OWNER

    @property
    def sees_all(self) -> bool:
        return self.key is None or "admin" in self.key.scopes

    @property
    def owner_filter(self) -> str | None:
        """The owner every query of this caller is restricted to; None for admins."""
        return None if self.sees_all else self.owner

    def require(self, scope: Scope) -> None:
        """AccessDenied unless this caller's key has `scope` (auth off: every scope)."""
        if self.key is not None and not allows(self.key.scopes, scope):
            raise AccessDenied(f"this key lacks the '{scope}' scope", "insufficient_scope")

    def may_use_model(self, model: str | None) -> bool:
        allowed = self.key.models if self.key else None
        return allowed is None or model in allowed

    def usable_models(self, models: Iterable[str]) -> list[str]:
        return [m for m in models if self.may_use_model(m)]

    def check_model(self, model: str | None) -> None:
        if not self.may_use_model(model):
            message = f"this key may not use model '{model}'"
            raise AccessDenied(message, "model_not_allowed", "model")

    def may_use_collection(self, name: str) -> bool:
        allowed = self.key.collections if self.key else None
        return allowed is None or name in allowed

    def check_collection(self, name: str) -> None:
        if not self.may_use_collection(name):
            message = f"this key may not use collection '{name}'"
            raise AccessDenied(message, "collection_not_allowed")

    def may_use_tool(self, server: str, tool: str) -> bool:
        """Whether the key's tool list ("notes:*,files:read_*") allows `server:tool`."""
        allowed = self.key.tools if self.key else None
        return allowed is None or matches(allowed, server, tool)

    def auto_approves(self, server: str, tool: str) -> bool:
        """Whether the admin's policy lets this key run the write tool without approval."""
        return self.key is not None and matches(self.key.auto_approve, server, tool)


def matches(patterns: Iterable[str], server: str, tool: str) -> bool:
    """Shell-style patterns over "server:tool" (`*` any run of characters)."""
    return any(fnmatchcase(f"{server}:{tool}", pattern) for pattern in patterns)
