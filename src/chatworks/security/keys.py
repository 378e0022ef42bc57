"""API keys: create (the secret is shown once), list, revoke, and look up by secret.

A secret is `cw-` + 256 random bits. Only its sha256 is stored: a leaked database yields no key,
and since the secret is random (not a password) a slow hash would add nothing. Lookup goes by
hash through a unique index; a timing difference in that lookup reveals bits of a hash, which
does not help anyone find a secret. The bootstrap admin key (`CHATWORKS_ADMIN_KEY`) is compared
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatworks.security.limits import KeyLimits
from chatworks.security.scopes import Scope, parse_scopes
from chatworks.storage.models import DEFAULT_OWNER, ApiKeyRow, as_utc, new_id

SECRET_PREFIX = "cw-"
BOOTSTRAP_ID = "bootstrap-admin"

KeyState = Literal["active", "revoked", "expired"]


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    owner: str
    scopes: tuple[Scope, ...]
    models: tuple[str, ...] | None = None  # None: every model
    collections: tuple[str, ...] | None = None  # None: every collection of the owner
    tools: tuple[str, ...] | None = None  # "server:tool" patterns; None: every registered tool
    auto_approve: tuple[str, ...] = ()  # write tools it may run without a person's approval
    limits: KeyLimits = field(default_factory=KeyLimits)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime | None = None) -> KeyState:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id, name=row.name, prefix=row.prefix, owner=row.owner,
        scopes=parse_scopes(row.scopes),
        models=tuple(row.models) if row.models is not None else None,
        collections=tuple(row.collections) if row.collections is not None else None,
        tools=tuple(row.tools) if row.tools is not None else None,
        auto_approve=tuple(row.auto_approve or ()),
        limits=KeyLimits.from_json(row.limits or {}),
        created_at=as_utc(row.created_at), expires_at=as_utc(row.expires_at),
        revoked_at=as_utc(row.revoked_at),
    )  # fmt: skip


def create_key(
    session: Session,
    name: str,
    scopes: Sequence[str],
    *,
    owner: str | None = None,
    models: Sequence[str] | None = None,
    collections: Sequence[str] | None = None,
    tools: Sequence[str] | None = None,
    auto_approve: Sequence[str] = (),
    limits: KeyLimits | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret; the secret is not stored and cannot be shown again.
    Without `owner` the key is its own tenant; keys sharing an owner share documents (a team,
    or a rotated key that must keep its data)."""
    secret, key_id = new_secret(), new_id()
    row = ApiKeyRow(
        id=key_id, name=name, secret_hash=hash_secret(secret),
        prefix=secret[: len(SECRET_PREFIX) + 6], owner=owner or key_id,
        scopes=list(parse_scopes(scopes)),
        models=list(models) if models else None,
        collections=list(collections) if collections else None,
        tools=list(tools) if tools else None, auto_approve=list(auto_approve) or None,
        limits=(limits or KeyLimits()).to_json(), expires_at=as_utc(expires_at),
    )  # fmt: skip
    session.add(row)
    session.flush()
    return _key(row), secret


def list_keys(session: Session) -> list[ApiKey]:
    return [_key(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))]


def get_key(session: Session, key_id: str) -> ApiKey | None:
    row = session.get(ApiKeyRow, key_id)
    return _key(row) if row else None


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    """Revoke at once (every replica looks keys up per request). Revoking twice keeps the
    first time. None if there is no such key."""
    session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return get_key(session, key_id)


def find_key(session: Session, secret: str) -> ApiKey | None:
    """The stored key with this secret, whatever its state (the caller says why it fails)."""
    row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.secret_hash == hash_secret(secret)))
    return _key(row) if row else None


def has_active_keys(session: Session) -> bool:
    now = datetime.now(UTC)
    return any(k.state(now) == "active" for k in list_keys(session))


def bootstrap_key(admin_secret: str | None, presented: str) -> ApiKey | None:
    """The admin key from settings, if `presented` is it. It owns what the operator's CLI owns
    (the default tenant) and has no limits."""
    if not admin_secret or not hmac.compare_digest(admin_secret.encode(), presented.encode()):
        return None
    return ApiKey(BOOTSTRAP_ID, "bootstrap admin", "", DEFAULT_OWNER, ("admin",))
