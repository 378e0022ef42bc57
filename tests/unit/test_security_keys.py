"""Keys, scopes and when auth is on: pure logic, and the key store on a throwaway SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatworks.security import keys
from chatworks.security.exposure import (
    auth_required,
    exposure_problem,
    foreign_request,
    is_loopback,
)
from chatworks.security.limits import KeyLimits, Rate
from chatworks.security.scopes import allows, parse_scopes
from chatworks.settings import Settings
from chatworks.storage import open_database


def test_secrets_are_random_and_only_their_hash_is_kept():
    a, b = keys.new_secret(), keys.new_secret()
    assert a != b and a.startswith("cw-") and len(a) >= 40
    digest = keys.hash_secret(a)
    assert digest == keys.hash_secret(a) and len(digest) == 64 and a not in digest
    assert digest != keys.hash_secret(b)


def test_scopes_parse_in_canonical_order_and_admin_implies_all():
    assert parse_scopes("documents, chat") == ("chat", "documents")
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes("chat,root")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")
    assert allows(["chat"], "chat") and not allows(["chat"], "documents")
    assert all(allows(["admin"], s) for s in ("chat", "documents", "admin"))
    assert not allows(["chat", "documents"], "admin")


def test_key_state_follows_revocation_and_expiry():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    key = keys.ApiKey("k", "n", "cw-", "o", ("chat",), expires_at=now + timedelta(seconds=1))
    assert key.state(now) == "active"
    assert key.state(now + timedelta(seconds=1)) == "expired"
    revoked = keys.ApiKey("k", "n", "cw-", "o", ("chat",), revoked_at=now)
    assert revoked.state(now) == "revoked"


def test_bootstrap_admin_key_matches_only_itself():
    assert keys.bootstrap_key("s" * 20, "s" * 20).scopes == ("admin",)
    assert keys.bootstrap_key("s" * 20, "s" * 19 + "t") is None
    assert keys.bootstrap_key(None, "anything") is None


@pytest.fixture
def session(tmp_path):
    engine = open_database(Settings(data_dir=tmp_path, _env_file=None))
    with Session(engine) as s, s.begin():
        yield s


def test_create_find_revoke(session):
    limits = KeyLimits(Rate(rpm=5), {"m": Rate(tpm=100)}, budget_tokens=1000, budget_period="day")
    key, secret = keys.create_key(session, "ci", ["chat"], models=["m"], limits=limits)
    found = keys.find_key(session, secret)
    assert found == key and found.owner == key.id and found.limits == limits
    assert found.models == ("m",) and found.collections is None
    assert keys.find_key(session, secret + "x") is None
    assert keys.has_active_keys(session)
    revoked = keys.revoke_key(session, key.id)
    assert revoked.state() == "revoked"
    assert keys.revoke_key(session, key.id).revoked_at == revoked.revoked_at  # the first time
    assert keys.revoke_key(session, "nope") is None
    assert not keys.has_active_keys(session)


def test_keys_share_an_owner_when_told_and_expire(session):
    a, _ = keys.create_key(session, "a", ["documents"], owner="team")
    past = datetime.now(UTC) - timedelta(days=1)
    b, secret = keys.create_key(session, "b", ["documents"], owner="team", expires_at=past)
    assert a.owner == b.owner == "team"
    assert keys.find_key(session, secret).state() == "expired"


def test_two_keys_never_share_a_hash(session):
    _, secret = keys.create_key(session, "a", ["chat"])
    from chatworks.storage.models import ApiKeyRow

    session.add(ApiKeyRow(name="dup", secret_hash=keys.hash_secret(secret), prefix="x",
                          owner="o", scopes=["chat"], limits={}))  # fmt: skip
    with pytest.raises(IntegrityError):
        session.flush()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_keeps_auth_off_by_default(host):
    assert is_loopback(host)
    settings = Settings(host=host, _env_file=None)
    assert not auth_required(settings)
    assert exposure_problem(settings, has_keys=False) is None


def test_network_address_needs_a_key_or_insecure():
    assert not is_loopback("0.0.0.0") and not is_loopback("my-host")
    exposed = Settings(host="0.0.0.0", _env_file=None)
    assert auth_required(exposed)
    assert "no key exists" in exposure_problem(exposed, has_keys=False)
    assert exposure_problem(exposed, has_keys=True) is None
    with_admin = Settings(host="0.0.0.0", admin_key="k" * 16, _env_file=None)
    assert exposure_problem(with_admin, has_keys=False) is None
    insecure = Settings(host="0.0.0.0", insecure=True, _env_file=None)
    assert not auth_required(insecure) and exposure_problem(insecure, has_keys=False) is None
    explicit_off = Settings(host="0.0.0.0", auth="off", _env_file=None)
    assert "auth is off" in exposure_problem(explicit_off, has_keys=True)
    assert auth_required(Settings(auth="required", _env_file=None))  # on loopback too


@pytest.mark.parametrize(
    ("host", "origin", "reason"),
    [
        ("127.0.0.1:8000", None, None),
        ("localhost:8000", "http://localhost:8000", None),
        ("[::1]:8000", "http://[::1]:8000", None),
        ("127.0.0.1:8000", "http://evil.example", "cross_origin_request"),
        ("127.0.0.1:8000", "http://127.0.0.1:9999", "cross_origin_request"),  # another local app
        ("127.0.0.1:8000", "null", "cross_origin_request"),  # sandboxed iframes, file:// pages
        ("evil.example:8000", None, "host_not_allowed"),  # DNS rebinding
        ("127.0.0.1.evil.example", None, "host_not_allowed"),
        (None, None, "host_not_allowed"),
    ],
)
def test_keyless_requests_must_be_local_and_same_origin(host, origin, reason):
    assert foreign_request(host, origin) == reason
