"""Real servers for end-to-end tests: one chatworks with the default model for the session,
and one with the scripted provider for what must not depend on a model's words."""

from __future__ import annotations

import json

import pytest

from tests.servers import REPO, LiveServer, start_server

# The converted default model is cached here between runs (conversion takes ~20-40 s).
TEST_DATA = REPO / ".test-data"

# Few slots and a small queue so the overload test can fill them; the tests otherwise send one
# request at a time.
LIVE_ENV = {
    "CHATWORKS_DATA_DIR": str(TEST_DATA),
    "CHATWORKS_ENGINE_SLOTS": "2",
    "CHATWORKS_MAX_WAITING_REQUESTS": "2",
    "CHATWORKS_QUEUE_TIMEOUT_S": "60",
    # Grounded answers generated, not quoted: these servers test generation around documents
    # (the extractive default has its own server in test_documents_api.py).
    "CHATWORKS_RAG_ANSWER": "generate",
}

MODEL = "smollm2-135m-instruct"

# The scripted server's replies (see chatworks.providers.scripted): a grounded answer that cites
# the passage holding the fact, one that quotes it without a marker, one with a marker naming no
# source, and the model's own refusal (asked about lunch, which the documents cover, so that the
# answerability check lets the questions reach the model). Rules match the question at the end
# of a grounded prompt (the passages before it contain the fact too); anything else is echoed.
SCRIPT = {
    "delay_s": 0.01,
    "rules": [
        {"match": "Question: What is the secret code word",
         "reply": "The code word is BLUEBIRD-42 {cite:BLUEBIRD-42}."},
        {"match": "Question: What is the Zephyr project password",
         "reply": "The secret code word of the Zephyr project is BLUEBIRD-42."},
        {"match": "Question: Where is lunch served", "reply": "Staff eat together [7]."},
        {"match": "Question: (When is lunch served|What is the dress code)",
         "reply": "I don't know based on the provided documents."},
        # A slow upstream for the gateway drill (test_fault_drills.py): 1.5 s before each word.
        {"match": "^answer slowly$", "reply": "one two three", "delay_s": 1.5},
    ],
}  # fmt: skip


@pytest.fixture(scope="session")
def live_server() -> LiveServer:
    """The default configuration: the native engine."""
    server = start_server("live", LIVE_ENV)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def transformers_server() -> LiveServer:
    """The reference provider, on the same weights."""
    server = start_server("transformers", {**LIVE_ENV, "CHATWORKS_PROVIDER": "transformers"})
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["native", "transformers"])
def any_server(request) -> LiveServer:
    """Runs a test once per local provider."""
    name = "live_server" if request.param == "native" else "transformers_server"
    return request.getfixturevalue(name)


@pytest.fixture(scope="session")
def scripted_server(tmp_path_factory) -> LiveServer:
    """Deterministic replies from SCRIPT behind the real server: documents, citations, streams."""
    server = start_server("scripted", scripted_env(tmp_path_factory.mktemp("scripted")))
    yield server
    server.stop()


# The bootstrap admin key of the secured servers (CHATWORKS_ADMIN_KEY).
ADMIN_KEY = "cw-test-admin-0123456789abcdef"


def scripted_env(data_dir, **extra: str) -> dict[str, str]:
    """The environment of a scripted server (SCRIPT) keeping its data in `data_dir`."""
    script = data_dir / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return {**LIVE_ENV, "CHATWORKS_DATA_DIR": str(data_dir), "CHATWORKS_PROVIDER": "scripted",
            "CHATWORKS_SCRIPT_PATH": str(script), **extra}  # fmt: skip


def secured_env(data_dir, **extra: str) -> dict[str, str]:
    """A scripted server that requires keys, on 127.0.0.1 (auth=required, not the address,
    turns it on: tests never bind a network address)."""
    return scripted_env(data_dir, CHATWORKS_AUTH="required", CHATWORKS_ADMIN_KEY=ADMIN_KEY,
                        **extra)  # fmt: skip


@pytest.fixture(scope="session")
def secured_data(tmp_path_factory):
    """The secured server's data dir: the CLI manages its keys there."""
    return tmp_path_factory.mktemp("secured")


@pytest.fixture(scope="session")
def secured_server(secured_data) -> LiveServer:
    """The scripted server with auth required: keys, scopes, tenancy, the UI's key prompt."""
    server = start_server("secured", secured_env(secured_data))
    yield server
    server.stop()


def create_key(server: LiveServer, **fields) -> tuple[str, str]:
    """(key id, secret) of a new key made over `/v1/keys` with the admin key."""
    import httpx

    body = {"name": "test", "scopes": ["chat"], **fields}
    r = httpx.post(f"{server.api_url}/keys", json=body, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["secret"]
