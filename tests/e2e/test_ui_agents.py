"""Agents in the UI (Debian Chromium): pick the notes tool server, ask for a note, see the
approval card with the call's arguments, deny, ask again, allow once; the write runs once and
its call shows collapsed with arguments and result. Scripted model (control flow only).
Screenshots: tests/artifacts/ui-agent-approval.png, ui-agent-allowed.png."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e import test_ui
from tests.e2e.test_agents import notes_store, serve, writes
from tests.e2e.test_ui import desktop_page, send, shot

pytestmark = pytest.mark.e2e

browser = test_ui.browser  # the same module-scoped Chromium fixture


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-agents")
    store = notes_store(root)
    server = serve("ui-agents", root / "data", store, secured=False)
    yield server, store
    server.stop()


@pytest.fixture
def page(browser: Browser, world) -> Page:
    yield from desktop_page(browser, world[0])


def test_a_write_asks_first_and_runs_only_when_allowed(page: Page, world):
    _, store = world
    picker = page.get_by_test_id("tool-picker")
    picker.locator("summary").click()
    page.get_by_test_id("tool-notes").check()
    picker.locator("summary").click()
    expect(picker).to_contain_text("Tools (1)")
    send(page, "Write a note called groceries saying buy milk")
    card = page.get_by_test_id("approval-card").last
    expect(card).to_contain_text("notes · write_note", timeout=60_000)
    expect(card).to_contain_text('"text": "buy milk"')
    shot(page, "agent-approval")
    card.get_by_test_id("approval-deny").click()
    expect(card.get_by_test_id("approval-answer")).to_have_text("Denied", timeout=60_000)
    expect(page.get_by_test_id("message-assistant").last).to_contain_text("denied")
    assert writes(store) == []
    send(page, "Write a note called groceries saying buy milk")
    card = page.get_by_test_id("approval-card").last
    expect(card.get_by_test_id("approval-once")).to_be_visible(timeout=60_000)
    card.get_by_test_id("approval-once").click()
    expect(page.get_by_test_id("message-assistant").last).to_contain_text(
        "saved the note groceries", timeout=60_000
    )
    call = page.get_by_test_id("tool-call").last
    call.locator("summary").click()
    expect(call).to_contain_text("saved note groceries")
    shot(page, "agent-allowed")
    assert [w["name"] for w in writes(store)] == ["groceries"]
