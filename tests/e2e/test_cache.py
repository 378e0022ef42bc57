"""The response cache through the real server (scripted provider): a repeated deterministic
request is a hit (header and metric) with the same answer, a non-deterministic or streamed one
never is, a collection's entries go stale when a document is added or deleted, and two tenants
never share an entry. The Redis store's own contract is tests/contracts/test_cache_contract.py."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import create_key
from tests.e2e.test_documents_api import FACTS

pytestmark = pytest.mark.e2e

QUESTION = "What is the secret code word of the Zephyr project?"


def chat(client: httpx.Client, text: str, **extra) -> httpx.Response:
    body = {"model": "scripted", "messages": [{"role": "user", "content": text}], **extra}
    r = client.post("/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r


def hits(server, route: str) -> float:
    return server.metric("chatworks_response_cache_requests_total", route=route, result="hit")


@pytest.fixture
def client(scripted_server):
    with httpx.Client(base_url=scripted_server.api_url, timeout=60) as c:
        yield c


def test_repeated_greedy_chat_is_a_hit(scripted_server, client):
    text = f"remember {uuid.uuid4().hex}"
    before = hits(scripted_server, "/v1/chat/completions")
    first = chat(client, text, temperature=0)
    second = chat(client, text, temperature=0, user="someone")  # `user` does not change it
    assert (first.headers["x-chatworks-cache"], second.headers["x-chatworks-cache"]) == (
        "miss",
        "hit",
    )
    assert hits(scripted_server, "/v1/chat/completions") == before + 1
    a, b = first.json(), second.json()
    assert b["choices"] == a["choices"] and b["usage"] == a["usage"]
    assert b["id"] != a["id"]  # a fresh id per response
    assert chat(client, text, temperature=0, max_tokens=3).headers["x-chatworks-cache"] == "miss"

    def directed(value: str) -> str:
        body = {"model": "scripted", "messages": [{"role": "user", "content": text}],
                "temperature": 0}  # fmt: skip
        r = client.post("/chat/completions", json=body, headers={"Cache-Control": value})
        return r.headers["x-chatworks-cache"]

    assert [directed("no-store"), directed("no-cache")] == ["bypass", "miss"]


def test_sampled_and_streamed_requests_are_never_cached(scripted_server, client):
    text = f"sampled {uuid.uuid4().hex}"
    before = hits(scripted_server, "/v1/chat/completions")
    for _ in range(2):
        assert chat(client, text, temperature=0.7).headers["x-chatworks-cache"] == "bypass"
        streamed = chat(client, text, temperature=0, stream=True)
        assert streamed.headers["x-chatworks-cache"] == "bypass"
        assert "[DONE]" in streamed.text
    assert hits(scripted_server, "/v1/chat/completions") == before


def upload(client: httpx.Client, collection: str, name: str, text: str) -> str:
    r = client.post(f"/collections/{collection}/documents",
                    files={"file": (name, text.encode(), "text/markdown")})  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["document_id"]


def test_ask_is_cached_per_collection_version(scripted_server, client):
    collection = f"cache-{uuid.uuid4().hex[:8]}"
    first = upload(client, collection, "zephyr.md", FACTS)
    ask = {"question": QUESTION, "collection": collection}

    def outcome() -> str:
        r = client.post("/ask", json=ask)
        assert r.status_code == 200, r.text
        return r.headers["x-chatworks-cache"]

    assert [outcome(), outcome()] == ["miss", "hit"]
    grounded = {"model": "scripted", "temperature": 0, "collection": collection,
                "messages": [{"role": "user", "content": QUESTION}]}  # fmt: skip
    assert [client.post("/chat/completions", json=grounded).headers["x-chatworks-cache"]
            for _ in range(2)] == ["miss", "hit"]  # fmt: skip

    upload(client, collection, "garden.md", "# Garden\n\nThe gate is green.\n")
    assert [outcome(), outcome()] == ["miss", "hit"]  # an added document invalidates
    assert client.post("/chat/completions", json=grounded).headers["x-chatworks-cache"] == "miss"

    assert client.delete(f"/documents/{first}").status_code == 204
    assert [outcome(), outcome()] == ["miss", "hit"]  # so does a deleted one
    assert "BLUEBIRD" not in client.post("/ask", json=ask).json()["answer"]

    assert client.delete(f"/collections/{collection}").status_code == 204
    assert client.post("/ask", json=ask).status_code == 404  # no answer outlives its collection


def test_tenants_never_share_an_entry(secured_server):
    headers = {}
    for name in ("cache-a", "cache-b"):
        _, secret = create_key(secured_server, name=name, scopes=["chat"])
        headers[name] = {"Authorization": f"Bearer {secret}"}
    text = f"tenant {uuid.uuid4().hex}"
    outcomes = []
    for name in ("cache-a", "cache-b", "cache-b", "cache-a"):
        with httpx.Client(base_url=secured_server.api_url, headers=headers[name]) as c:
            outcomes.append(chat(c, text, temperature=0).headers["x-chatworks-cache"])
    assert outcomes == ["miss", "miss", "hit", "hit"]


def test_a_hit_still_counts_as_a_request(secured_server):
    def three_requests() -> list[httpx.Response]:
        _, secret = create_key(secured_server, name="cache-rpm", scopes=["chat"], rpm=2)
        message = {"role": "user", "content": f"limited {uuid.uuid4().hex}"}
        body = {"model": "scripted", "temperature": 0, "messages": [message]}
        with httpx.Client(base_url=secured_server.api_url,
                          headers={"Authorization": f"Bearer {secret}"}) as c:  # fmt: skip
            return [c.post("/chat/completions", json=body) for _ in range(3)]

    # Windows are fixed minutes: if one ended during the three requests, ask again (rather than
    # wait for a fresh minute, which costs up to 20 s).
    minute = time.time() // 60
    answers = three_requests()
    if time.time() // 60 != minute:
        answers = three_requests()
    assert [(r.status_code, r.headers.get("x-chatworks-cache")) for r in answers] == [
        (200, "miss"),
        (200, "hit"),
        (429, None),  # refused before the cache is asked
    ]
    assert answers[1].headers["x-ratelimit-remaining-requests"] == "0"
