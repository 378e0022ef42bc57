"""OIDC/JWT bearer tokens as keys: a token signed by the identity provider, checked against its
JWKS (a file, or a URL fetched and cached), becomes a key for the request it came with.

Checked: the signature (only the configured asymmetric algorithms, never `none` or HMAC, so a
public key can never be used as a shared secret), `exp` (required), `nbf`, `iss` and `aud` when
configured, and a `sub`. Scopes come from one claim (`scope`, space-separated as RFC 8693 and
most providers write it, or a list such as Keycloak's roles): values equal to a chatworks scope,
after an optional prefix (`chatworks:chat`), are granted, anything else is ignored. The tenant
is another claim (`sub` by default; a group or organisation claim makes a team share
documents).

Does not cover: token issuance, refresh, introspection or revocation lists (a token is valid
until it expires, so keep lifetimes short), nor per-token limits: a token carries no stored
limits or budget, as the bootstrap admin key does not; put limits on stored keys or in front.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jwt

from chatworks.security.keys import ApiKey
from chatworks.security.scopes import SCOPES
from chatworks.settings import Settings

# Key ids of token callers start with this: nothing is stored for them (no limits, no usage).
TOKEN_ID_PREFIX = "oidc:"


class InvalidToken(Exception):
    def __init__(self, message: str, code: str = "invalid_token"):
        super().__init__(message)
        self.code = code


def looks_like_jwt(secret: str) -> bool:
    return secret.count(".") == 2 and secret.startswith("eyJ")


@dataclass(frozen=True)
class TokenVerifier:
    jwks: str  # a file path or an http(s) URL
    algorithms: tuple[str, ...]
    issuer: str | None
    audience: str | None
    scopes_claim: str
    scope_prefix: str
    owner_claim: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier | None:
        if not settings.oidc_jwks:
            return None
        return cls(settings.oidc_jwks, tuple(settings.oidc_algorithms), settings.oidc_issuer,
                   settings.oidc_audience, settings.oidc_scopes_claim, settings.oidc_scope_prefix,
                   settings.oidc_owner_claim)  # fmt: skip

    def _signing_key(self, token: str) -> jwt.PyJWK:
        if self.jwks.startswith(("http://", "https://")):
            return _client(self.jwks).get_signing_key_from_jwt(token)
        kid = jwt.get_unverified_header(token).get("kid")
        keys = jwt.PyJWKSet.from_json(Path(self.jwks).read_text()).keys
        found = [k for k in keys if kid is None or k.key_id == kid]
        if not found:
            raise InvalidToken(f"no key in the JWKS has id {kid!r}")
        return found[0]

    def verify(self, token: str) -> ApiKey:
        """The key this token stands for; InvalidToken (401) if it is not valid. Blocking: the
        JWKS may be read or fetched."""
        try:
            signing = self._signing_key(token)
            claims = jwt.decode(
                token, signing.key, algorithms=list(self.algorithms), audience=self.audience,
                issuer=self.issuer, options={"require": ["exp", "sub"],
                                             "verify_aud": self.audience is not None},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired", "token_expired") from None
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        owner = str(claims.get(self.owner_claim) or claims["sub"])[:64]
        return ApiKey(
            id=f"{TOKEN_ID_PREFIX}{claims['sub']}"[:64], name=str(claims["sub"])[:200],
            prefix="jwt", owner=owner, scopes=self._scopes(claims.get(self.scopes_claim)),
        )  # fmt: skip

    def _scopes(self, value: object) -> tuple:
        values = value.split() if isinstance(value, str) else value
        if not isinstance(values, list):
            return ()
        granted = {v[len(self.scope_prefix) :] for v in values
                   if isinstance(v, str) and v.startswith(self.scope_prefix)}  # fmt: skip
        return tuple(s for s in SCOPES if s in granted)


_CLIENTS: dict[str, jwt.PyJWKClient] = {}


def _client(url: str) -> jwt.PyJWKClient:
    """One client per URL: it caches the keys (5 minutes) and refetches on an unknown `kid`,
    so a provider's key rotation is picked up without a restart."""
    if url not in _CLIENTS:
        _CLIENTS[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
    return _CLIENTS[url]
