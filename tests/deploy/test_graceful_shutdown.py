"""SIGTERM, as Kubernetes, Cloud Run and `docker stop` send it: the server stops admitting,
lets the streams in flight finish within `CHATWORKS_SHUTDOWN_TIMEOUT_S`, and exits 0. A stream
still running at the deadline is cut, and the exit is still clean."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from tests.servers import LiveServer, start_server

pytestmark = pytest.mark.e2e

WORDS = [f"w{i}" for i in range(12)]
# The scripted provider pauses before each word, so the stream is still running when the
# signal arrives (the pause is what makes it slow, not an assertion about time).
SCRIPT = {"delay_s": 0.25, "rules": [{"match": "drain", "reply": " ".join(WORDS)}]}
BODY = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "drain"}]}


def _server(tmp_path, deadline_s: str) -> LiveServer:
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    env = {"CHATWORKS_DATA_DIR": str(tmp_path), "CHATWORKS_PROVIDER": "scripted",
           "CHATWORKS_SCRIPT_PATH": str(tmp_path / "script.json"),
           "CHATWORKS_SHUTDOWN_TIMEOUT_S": deadline_s}  # fmt: skip
    return start_server("shutdown", env)


def _wait_for_log(server: LiveServer, text: str) -> None:
    """Until the server has logged `text` (uvicorn's own shutdown steps), or it exited."""
    while not any(text in line for line in server.log_lines()):
        assert server.process.poll() is None or any(text in x for x in server.log_lines())
        time.sleep(0.05)


def _sigterm_mid_stream(server: LiveServer) -> tuple[list[str], Exception | None]:
    """Starts a stream, sends SIGTERM after its first word, checks that a new connection is
    refused while it drains, and returns the stream's data lines and how it ended."""
    lines: list[str] = []
    try:
        with httpx.stream("POST", f"{server.api_url}/chat/completions", json=BODY,
                          timeout=120) as response:  # fmt: skip
            assert response.status_code == 200
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                lines.append(line.removeprefix("data: "))
                if len(lines) == 2:  # the role chunk, then the first word: mid-stream now
                    server.process.send_signal(signal.SIGTERM)
                    # Logged once the listening socket is closed and draining has begun.
                    _wait_for_log(server, "Waiting for connections to close")
                    with pytest.raises(httpx.ConnectError):
                        httpx.get(f"{server.base_url}/healthz", timeout=10)
    except httpx.HTTPError as exc:
        return lines, exc
    return lines, None


def _text(lines: list[str]) -> str:
    chunks = [json.loads(x) for x in lines if x != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_sigterm_drains_the_stream_in_flight_and_exits_0(tmp_path):
    server = _server(tmp_path, deadline_s="120")
    try:
        lines, error = _sigterm_mid_stream(server)
        assert error is None
        assert lines[-1] == "[DONE]"
        assert _text(lines).split() == WORDS  # every word, none lost to the shutdown
        assert server.process.wait(timeout=120) == 0
    finally:
        server.stop()


def test_a_stream_past_the_deadline_is_cut_and_the_exit_is_still_clean(tmp_path):
    server = _server(tmp_path, deadline_s="0.5")
    try:
        lines, error = _sigterm_mid_stream(server)
        assert "[DONE]" not in lines and len(_text(lines).split()) < len(WORDS)
        assert error is None or isinstance(error, httpx.RemoteProtocolError)
        assert server.process.wait(timeout=120) == 0
        assert any("timeout graceful shutdown exceeded" in x for x in server.log_lines())
    finally:
        server.stop()
