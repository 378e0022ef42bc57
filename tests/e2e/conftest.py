"""Real servers for end-to-end tests: one chatworks with the default model for the session."""

from __future__ import annotations

import pytest

from tests.servers import REPO, LiveServer, start_server

# The converted default model is cached here between runs (conversion takes ~20-40 s).
TEST_DATA = REPO / ".test-data"

# Small queue so the overload test can fill it; the tests otherwise send one request at a time.
LIVE_ENV = {
    "CHATWORKS_DATA_DIR": str(TEST_DATA),
    "CHATWORKS_MAX_WAITING_REQUESTS": "2",
    "CHATWORKS_QUEUE_TIMEOUT_S": "60",
}

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def live_server() -> LiveServer:
    server = start_server("live", LIVE_ENV)
    yield server
    server.stop()
