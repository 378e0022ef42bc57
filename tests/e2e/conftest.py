"""Real servers for end-to-end tests: one chatworks with the default model for the session."""

from __future__ import annotations

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
}

MODEL = "smollm2-135m-instruct"


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
