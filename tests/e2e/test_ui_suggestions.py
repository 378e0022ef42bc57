"""The empty chat offers what works: questions a collection answers, made from its own headings
(a click picks the collection and gets a cited answer), and prompts the default model handles
(the model probes flagged `suggest`). Against a scripted server with extractive answers, so
nothing depends on a model's words. Screenshot: tests/artifacts/ui-suggestions.png."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e import test_ui
from tests.e2e.conftest import scripted_env
from tests.e2e.test_ui import desktop_page, shot, wait_until_idle
from tests.servers import start_server

pytestmark = pytest.mark.e2e

browser = test_ui.browser  # the same module-scoped Chromium fixture

HANDBOOK = """# Zephyr handbook

## Request a badge

Badges are issued at the front desk on the ground floor. Bring a photo ID: the badge is ready
within ten minutes.

## Book a meeting room

Meeting rooms on the third floor are booked in the Zephyr calendar, up to two weeks ahead.
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("suggestions")
    server = start_server("suggestions", scripted_env(data, CHATWORKS_RAG_ANSWER="extract"))
    api = server.api_url
    assert httpx.post(f"{api}/collections", json={"name": "handbook"}).status_code == 201
    upload = {"file": ("handbook.md", HANDBOOK.encode(), "text/markdown")}
    assert httpx.post(f"{api}/collections/handbook/documents", files=upload,
                      timeout=120).status_code == 201  # fmt: skip
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser, server) -> Iterator[Page]:
    yield from desktop_page(browser, server)


def test_the_api_suggests_questions_from_headings_and_prompts_from_the_probes(server):
    found = httpx.get(f"{server.api_url}/collections/handbook/suggestions", timeout=120).json()
    assert [s["question"] for s in found["data"]] == [
        "How do I request a badge?", "How do I book a meeting room?"
    ]  # fmt: skip
    assert {s["source"] for s in found["data"]} == {"handbook.md"}
    prompts = httpx.get(f"{server.api_url}/suggestions").json()["data"]
    assert "What is the capital of Japan?" in [p["prompt"] for p in prompts]


def test_a_suggested_question_picks_its_collection_and_is_answered_with_sources(page: Page):
    grounded = page.get_by_test_id("suggestion-grounded")
    expect(grounded).to_have_count(2, timeout=60_000)
    expect(page.get_by_test_id("suggestion-chat").first).to_be_visible()
    expect(page.get_by_text("Ask handbook, with sources")).to_be_visible()
    shot(page, "suggestions")
    grounded.filter(has_text="How do I request a badge?").click()
    wait_until_idle(page)
    expect(page.get_by_test_id("collection-picker")).to_have_value("handbook")
    answer = page.get_by_test_id("message-assistant").last
    expect(answer).to_contain_text("front desk")
    expect(answer.get_by_test_id("citation").first).to_contain_text("handbook.md")
    # In the collection, a new chat offers only its questions.
    page.get_by_test_id("new-chat").click()
    expect(page.get_by_test_id("suggestion-grounded")).to_have_count(2)
    expect(page.get_by_test_id("suggestion-chat")).to_have_count(0)
