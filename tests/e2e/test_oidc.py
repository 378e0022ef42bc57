"""OIDC/JWT bearer tokens through the real server, its JWKS fetched from a URL (a local HTTP
server in the test): a token's scope claim decides what it may do, its `sub` is its tenant,
and a bad token is a 401 like a bad key. Token validation itself: tests/unit/test_oidc.py."""

from __future__ import annotations

import json
import threading
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.e2e.conftest import secured_env
from tests.servers import start_server
from tests.unit.test_oidc import AUDIENCE, ISSUER, jwks, rsa_key, token

pytestmark = pytest.mark.e2e


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def signer():
    return rsa_key()


@pytest.fixture(scope="module")
def server(signer, tmp_path_factory):
    keys_dir = tmp_path_factory.mktemp("jwks")
    (keys_dir / "jwks.json").write_text(json.dumps(jwks(("k1", signer))))
    jwks_server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(keys_dir)))
    threading.Thread(target=jwks_server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{jwks_server.server_address[1]}/jwks.json"
    env = secured_env(tmp_path_factory.mktemp("oidc"), CHATWORKS_OIDC_JWKS=url,
                      CHATWORKS_OIDC_ISSUER=ISSUER, CHATWORKS_OIDC_AUDIENCE=AUDIENCE)  # fmt: skip
    chatworks = start_server("oidc", env)
    yield chatworks
    chatworks.stop()
    jwks_server.shutdown()
    jwks_server.server_close()


def client(server, bearer: str) -> httpx.Client:
    return httpx.Client(base_url=server.api_url, headers={"Authorization": f"Bearer {bearer}"})


def test_scopes_come_from_the_token(server, signer):
    with client(server, token(signer, scope="chat")) as chat:
        assert chat.get("/models").status_code == 200
        body = {"model": "scripted", "messages": [{"role": "user", "content": "hello"}]}
        assert chat.post("/chat/completions", json=body).json()["choices"][0]["message"]
        refused = chat.get("/collections")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "insufficient_scope"
    with client(server, token(signer, scope="openid profile")) as nothing:
        assert nothing.get("/models").status_code == 403


def test_bad_tokens_are_401(server, signer):
    for bad, code in (
        (token(rsa_key()), "invalid_token"),
        (token(signer, aud="other"), "invalid_token"),
        (token(signer, exp=1, iat=0), "token_expired"),
    ):
        with client(server, bad) as c:
            r = c.get("/models")
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == code
        assert r.headers["www-authenticate"] == "Bearer"


def test_the_subject_is_the_tenant(server, signer):
    name = f"oidc-{uuid.uuid4().hex[:8]}"
    alice = client(server, token(signer, sub="alice", scope="documents"))
    bob = client(server, token(signer, sub="bob", scope="documents"))
    with alice, bob:
        assert alice.post("/collections", json={"name": name}).json()["owner"] == "alice"
        assert name in [c["name"] for c in alice.get("/collections").json()["data"]]
        assert name not in [c["name"] for c in bob.get("/collections").json()["data"]]
        assert bob.delete(f"/collections/{name}").status_code == 404
