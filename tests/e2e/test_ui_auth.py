"""The UI against a server that requires keys, in Debian Chromium: it asks for a key when the
server answers 401, keeps it in localStorage, sends it on every call (chat, collections), and
asks again, with the server's reason, when the stored key is revoked, or when the user
forgets it from the settings.
Screenshots: tests/artifacts/ui-key-*.png."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e import test_ui
from tests.e2e.conftest import ADMIN_KEY, create_key
from tests.e2e.test_ui import ARTIFACTS, LAST_ANSWER_JS, desktop_page, send, wait_for_js

pytestmark = pytest.mark.e2e

KEY_STORAGE = "chatworks.apiKey"  # see web/static/keys.js
browser = test_ui.browser  # the same module-scoped Chromium fixture


@pytest.fixture
def page(browser: Browser, secured_server) -> Iterator[Page]:
    yield from desktop_page(browser, secured_server)


def test_the_ui_asks_for_a_key_keeps_it_and_asks_again_when_revoked(page, secured_server):
    key_id, secret = create_key(secured_server, name="browser", scopes=["chat", "documents"])
    dialog = page.get_by_test_id("key-dialog")
    expect(dialog).to_be_visible()  # models and collections both got 401: one dialog
    expect(page.get_by_test_id("key-error")).to_be_hidden()  # a first visit is no error
    page.screenshot(path=str(ARTIFACTS / "ui-key-prompt.png"))
    page.get_by_test_id("key-input").fill(secret)
    page.get_by_test_id("key-save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("model-picker")).to_have_value("scripted")
    assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") == secret

    send(page, "hello from the browser")
    wait_for_js(page, f"({LAST_ANSWER_JS})() === 'hello from the browser'")

    page.reload()  # the stored key is used without asking
    expect(page.get_by_test_id("model-picker")).to_have_value("scripted")
    expect(dialog).to_be_hidden()

    page.get_by_test_id("settings-button").click()  # forgetting the key asks for one again
    page.screenshot(path=str(ARTIFACTS / "ui-key-settings.png"))
    page.get_by_test_id("key-forget").click()
    expect(dialog).to_be_visible()
    assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") is None
    page.get_by_test_id("key-input").fill(secret)
    page.get_by_test_id("key-input").press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("model-picker")).to_have_value("scripted")

    httpx.delete(f"{secured_server.api_url}/keys/{key_id}", headers={"X-API-Key": ADMIN_KEY})
    page.reload()
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("key-error")).to_have_text("this API key is revoked")
    page.screenshot(path=str(ARTIFACTS / "ui-key-revoked.png"))
