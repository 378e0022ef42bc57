"""Tenant isolation (BOLA) on the real server: key B can never list, read, retrieve, cite, ask
over, change or delete key A's collections and documents, with guessed ids and crafted fields
too; another tenant's things answer 404 exactly like things that do not exist. Keys sharing an
owner share data; admins see everything; with auth off everything has the default owner."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, create_key
from tests.e2e.test_documents_api import FACTS
from tests.servers import REPO

pytestmark = pytest.mark.e2e

QUESTION = "What is the secret code word of the Zephyr project?"
OTHER = "# Garden\n\nThe garden gate is painted green and opens at eight.\n"


def as_key(server, key: str):
    return httpx.Client(base_url=server.api_url, headers={"Authorization": f"Bearer {key}"},
                        timeout=120)  # fmt: skip


def upload(client: httpx.Client, collection: str, name: str, text: str) -> str:
    r = client.post(f"/collections/{collection}/documents",
                    files={"file": (name, text.encode(), "text/markdown")})  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["document_id"]


@pytest.fixture(scope="module")
def tenants(secured_server):
    """A owns a collection with a secret; B owns one without it; A2 shares A's owner."""
    a_id, a_key = create_key(secured_server, name="tenant-a", scopes=["chat", "documents"])
    _, a2_key = create_key(secured_server, name="tenant-a2", scopes=["documents"], owner=a_id)
    _, b_key = create_key(secured_server, name="tenant-b", scopes=["chat", "documents"])
    a, a2, b = (as_key(secured_server, k) for k in (a_key, a2_key, b_key))
    a_col, b_col = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    assert a.post("/collections", json={"name": a_col}).status_code == 201
    assert b.post("/collections", json={"name": b_col}).status_code == 201
    doc = upload(a, a_col, "zephyr.md", FACTS)
    upload(b, b_col, "garden.md", OTHER)
    yield {"a": a, "a2": a2, "b": b, "a_col": a_col, "b_col": b_col, "doc": doc}
    for c in (a, a2, b):
        c.close()


def test_b_cannot_see_or_read_as_collections(tenants):
    b, a_col, b_col = tenants["b"], tenants["a_col"], tenants["b_col"]
    assert [c["name"] for c in b.get("/collections").json()["data"]] == [b_col]
    missing = b.get("/collections/no-such-collection/documents")
    listed = b.get(f"/collections/{a_col}/documents")
    assert listed.status_code == missing.status_code == 404
    assert listed.json()["error"]["code"] == missing.json()["error"]["code"]


def test_b_cannot_ask_retrieve_or_cite_as_documents(tenants):
    b, a_col, b_col = tenants["b"], tenants["a_col"], tenants["b_col"]
    crafted = {"owner": "anything", "filters": {"owner": "anything"}, "collection_id": 1}
    for body in ({"question": QUESTION, "collection": a_col},
                 {"question": QUESTION, "collection": a_col, **crafted}):  # fmt: skip
        assert b.post("/ask", json=body).status_code == 404
        chat = {"model": "scripted", "collection": a_col, **body,
                "messages": [{"role": "user", "content": QUESTION}]}  # fmt: skip
        assert b.post("/chat/completions", json=chat).status_code == 404
    # In B's own collection the question finds nothing of A's, whatever B asks.
    own = b.post("/ask", json={"question": QUESTION + " BLUEBIRD-42", "collection": b_col}).json()
    assert "BLUEBIRD" not in own["answer"]
    assert all(c["document_id"] != tenants["doc"] for c in own["citations"])


def test_b_cannot_change_or_delete_as_data_even_with_its_ids(tenants):
    a, b, a_col, doc = tenants["a"], tenants["b"], tenants["a_col"], tenants["doc"]
    assert b.delete(f"/documents/{doc}").status_code == 404  # a real id, guessed or leaked
    assert b.delete(f"/documents/{uuid.uuid4().hex}").status_code == 404
    assert b.delete(f"/collections/{a_col}").status_code == 404
    taken = b.post(f"/collections/{a_col}/documents",
                   files={"file": ("x.md", b"# injected", "text/markdown")})  # fmt: skip
    assert taken.status_code == 409
    assert b.post("/collections", json={"name": a_col}).status_code == 409
    docs = a.get(f"/collections/{a_col}/documents").json()["data"]
    assert [d["id"] for d in docs] == [doc]  # untouched
    answer = a.post("/ask", json={"question": QUESTION, "collection": a_col}).json()
    assert "BLUEBIRD-42" in answer["answer"] and answer["citations"][0]["document_id"] == doc


def test_grounding_a_chat_in_a_collection_needs_the_documents_scope(tenants, secured_server):
    a_id = tenants["a"].get("/collections").json()["data"][0]["owner"]
    _, chat_only = create_key(secured_server, name="chat-only", scopes=["chat"], owner=a_id)
    with as_key(secured_server, chat_only) as c:
        body = {"model": "scripted", "collection": tenants["a_col"],
                "messages": [{"role": "user", "content": QUESTION}]}  # fmt: skip
        r = c.post("/chat/completions", json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
        del body["collection"]
        assert c.post("/chat/completions", json=body).status_code == 200


def test_keys_with_one_owner_share_and_admins_see_all(tenants, secured_server):
    a2, a_col, b_col = tenants["a2"], tenants["a_col"], tenants["b_col"]
    assert [c["name"] for c in a2.get("/collections").json()["data"]] == [a_col]
    with as_key(secured_server, ADMIN_KEY) as admin:
        names = {c["name"] for c in admin.get("/collections").json()["data"]}
        assert {a_col, b_col} <= names
        assert admin.get(f"/collections/{b_col}/documents").status_code == 200


def test_a_key_limited_to_collections_stays_inside_them(tenants, secured_server):
    a_id = tenants["a"].get("/collections").json()["data"][0]["owner"]
    _, narrow_key = create_key(secured_server, name="narrow", scopes=["documents"],
                               owner=a_id, collections=["elsewhere"])  # fmt: skip
    with as_key(secured_server, narrow_key) as narrow:
        assert narrow.get("/collections").json()["data"] == []
        r = narrow.get(f"/collections/{tenants['a_col']}/documents")
        assert r.status_code == 403 and r.json()["error"]["code"] == "collection_not_allowed"
        assert narrow.delete(f"/documents/{tenants['doc']}").status_code == 404


def test_ingestion_and_deletion_are_audited(tenants, secured_server):
    assert tenants["b"].delete(f"/documents/{tenants['doc']}").status_code == 404
    with as_key(secured_server, ADMIN_KEY) as admin:
        log = admin.get("/audit", params={"limit": 1000}).json()["data"]
    seen = {(e["action"], e["outcome"], e["resource"]) for e in log}
    assert ("document.ingest", "ok", f"{tenants['a_col']}/zephyr.md") in seen
    assert ("document.delete", "not_found", tenants["doc"]) in seen  # B's attempt
    assert ("collection.create", "ok", tenants["b_col"]) in seen
    entry = next(e for e in log if e["action"] == "document.ingest")
    assert entry["client"] == "127.0.0.1" and entry["actor"] not in ("", "anonymous")


def test_with_auth_off_everything_has_the_default_owner(scripted_server):
    name = f"open-{uuid.uuid4().hex[:6]}"
    base = scripted_server.api_url
    assert httpx.post(f"{base}/collections", json={"name": name}).status_code == 201
    listed = {c["name"]: c["owner"] for c in httpx.get(f"{base}/collections").json()["data"]}
    assert listed[name] == "default"
    assert httpx.delete(f"{base}/collections/{name}").status_code == 204


def test_the_cli_ingests_for_a_tenant_and_never_into_anothers(tmp_path):
    env = {**os.environ, "CHATWORKS_DATA_DIR": str(tmp_path / "data")}
    doc = tmp_path / "notes.md"
    doc.write_text("# Tea\n\nGreen tea is steeped at 80 degrees for two minutes.\n")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chatworks.cli", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    made = cli("ingest", str(doc), "--collection", "tea", "--owner", "team-a")
    assert made.returncode == 0, made.stderr
    assert cli("collections").stdout.split() == ["tea", "1", "documents", "owner", "team-a"]
    refused = cli("ingest", str(doc), "--collection", "tea", "--owner", "team-b")
    assert refused.returncode == 2 and "belongs to team-a" in refused.stdout
