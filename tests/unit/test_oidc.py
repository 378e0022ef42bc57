"""OIDC/JWT bearer tokens (security/oidc.py) against a JWKS file made from RSA keys generated
here: a valid token becomes a key with the scopes its claim names and the tenant its `sub` (or
another claim) names; an expired, foreign-signed, wrong-audience or wrong-issuer token, an
unsigned one and the HS256 algorithm-confusion trick are all refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatworks.security.oidc import InvalidToken, TokenVerifier, looks_like_jwt
from chatworks.settings import Settings

ISSUER, AUDIENCE = "https://id.example.test", "chatworks"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> dict:
    entries = []
    for kid, key in keys:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        entries.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    return {"keys": entries}


def token(key, kid: str = "k1", alg: str = "RS256", **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
            "scope": "openid chat", **claims}  # fmt: skip
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, alg,
                      headers={"kid": kid})  # fmt: skip


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def verifier(signer, tmp_path_factory) -> TokenVerifier:
    path: Path = tmp_path_factory.mktemp("oidc") / "jwks.json"
    path.write_text(json.dumps(jwks(("k1", signer))))
    settings = Settings(provider="scripted", oidc_jwks=str(path), oidc_issuer=ISSUER,
                        oidc_audience=AUDIENCE)  # fmt: skip
    return TokenVerifier.from_settings(settings)


def test_a_valid_token_is_a_key_with_its_scopes_and_tenant(verifier, signer):
    good = token(signer)
    assert looks_like_jwt(good) and not looks_like_jwt("cw-abc.def.ghi")
    key = verifier.verify(good)
    assert (key.scopes, key.owner, key.id) == (("chat",), "alice", "oidc:alice")
    listed = verifier.verify(token(signer, scope=["documents", "admin", "unknown"]))
    assert listed.scopes == ("documents", "admin")


def test_owner_claim_and_scope_prefix(signer, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(("k1", signer))))
    verifier = TokenVerifier.from_settings(Settings(
        provider="scripted", oidc_jwks=str(path), oidc_scopes_claim="roles",
        oidc_scope_prefix="chatworks:", oidc_owner_claim="org",
    ))  # fmt: skip
    key = verifier.verify(token(signer, roles=["chatworks:documents", "documents"], org="acme"))
    assert (key.scopes, key.owner) == (("documents",), "acme")


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("expired", "token_expired"),
        ("foreign key", "invalid_token"),
        ("wrong audience", "invalid_token"),
        ("wrong issuer", "invalid_token"),
        ("no sub", "invalid_token"),
        ("no exp", "invalid_token"),
        ("unsigned", "invalid_token"),
        ("hs256 with the public key", "invalid_token"),
    ],
)
def test_bad_tokens_are_refused(verifier, signer, case, code):
    now = int(time.time())
    public_pem = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bad = {
        "expired": lambda: token(signer, exp=now - 60, iat=now - 400),
        "foreign key": lambda: token(rsa_key()),  # same kid, another private key
        "wrong audience": lambda: token(signer, aud="someone-else"),
        "wrong issuer": lambda: token(signer, iss="https://evil.test"),
        "no sub": lambda: token(signer, sub=None),
        "no exp": lambda: token(signer, exp=None),
        "unsigned": lambda: jwt.encode(
            {"sub": "x", "exp": now + 60}, None, "none", headers={"kid": "k1"}
        ),
        # The classic confusion: HMAC keyed with the (public) RSA key. PyJWT refuses to even
        # make it with a PEM key, so the signature is made by hand.
        "hs256 with the public key": lambda: _hs256(public_pem, now),
    }[case]()
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(bad)
    assert refused.value.code == code


def _hs256(secret: bytes, now: int) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 60, "scope": "admin"}
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"
