"""The web chat UI in Debian Chromium against a live chatworks server with the default model.

Covers: the model picker, streaming, Stop (the fetch is aborted and the UI is usable again),
usage under an answer, Regenerate, Edit-and-resend, the sidebar (titles, search, delete,
persistence), that model output cannot inject HTML or script, that a server error shows the
server's own message in a dismissible banner, and answers grounded in uploaded documents (new
collection, upload toasts, citation chips and their panel, refusals, history after a reload),
the last against the scripted provider so the chips do not depend on a model's words.
Screenshots go to tests/artifacts/ui-*.png.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STORAGE_KEY = "chatworks.conversations.v1"  # see web/static/store.js
SETTINGS_KEY = "chatworks.settings.v1"

# Text of the last assistant message, as JS, for wait_for_js predicates.
LAST_ANSWER_JS = """() => {
  const all = document.querySelectorAll('[data-testid=message-assistant] .markdown');
  return all.length ? all[all.length - 1].textContent : '';
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, base_url: str, **context_args) -> tuple[Page, list[str]]:
    context = browser.new_context(base_url=base_url, **context_args)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    return page, errors


def desktop_page(browser: Browser, server) -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = open_page(browser, server.base_url, viewport={"width": 1280, "height": 800})
    # The UI must run under its own Content-Security-Policy (api/middleware.py): a violation
    # is a feature the policy silently broke.
    page.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
    yield page
    page.context.close()
    assert errors == [], f"JavaScript errors in the page: {errors}"


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    """The UI on the default model."""
    yield from desktop_page(browser, live_server)


@pytest.fixture
def scripted_page(browser: Browser, scripted_server) -> Iterator[Page]:
    """The UI on the scripted provider: fixed answers, for what must not depend on a model."""
    yield from desktop_page(browser, scripted_server)


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"), animations="disabled")


def set_max_tokens(page: Page, value: int) -> None:
    page.get_by_test_id("settings-button").click()
    page.get_by_test_id("max-tokens").fill(str(value))
    page.get_by_role("button", name="Done").click()


def send(page: Page, text: str) -> None:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer").press("Enter")


def last_answer(page: Page) -> str:
    return page.evaluate(LAST_ANSWER_JS)


def wait_for_js(page: Page, predicate: str, arg=None, timeout_s: float = 90.0) -> None:
    """`page.wait_for_function`, polled from here with `page.evaluate` instead: the UI's
    Content-Security-Policy (no 'unsafe-eval') forbids the string evaluation it runs in the
    page, while `evaluate` goes through the debugger protocol."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"timed out waiting for: {predicate}"
        page.wait_for_timeout(50)


def wait_for_answer_longer_than(page: Page, n: int) -> None:
    wait_for_js(page, f"(n) => ({LAST_ANSWER_JS})().trim().length > n", n)


def wait_until_idle(page: Page) -> None:
    expect(page.get_by_test_id("stop")).to_be_hidden(timeout=120_000)
    expect(page.get_by_test_id("send")).to_be_visible()


def seed_conversations(page: Page, conversations: list[dict]) -> None:
    page.evaluate(
        "([key, value]) => localStorage.setItem(key, value)",
        [STORAGE_KEY, json.dumps(conversations)],
    )
    page.reload()


def conversation(cid: str, title: str, answer: str, updated: int) -> dict:
    return {
        "id": cid,
        "title": title,
        "createdAt": updated,
        "updatedAt": updated,
        "messages": [
            {"role": "user", "content": title},
            {"role": "assistant", "content": answer, "model": MODEL},
        ],
    }


def test_stream_stop_regenerate_and_edit(page: Page) -> None:
    picker = page.get_by_test_id("model-picker")
    expect(picker.locator(f"option[value='{MODEL}']")).to_have_count(1)
    expect(picker).to_have_value(MODEL)
    shot(page, "empty")

    # A long answer, streamed: the text appears and then grows.
    set_max_tokens(page, 1024)
    send(page, "Write a very long and detailed story about a lighthouse keeper and the sea.")
    expect(page.get_by_test_id("message-user")).to_have_text(re.compile("lighthouse keeper"))
    expect(page.get_by_test_id("stop")).to_be_visible()
    expect(page.get_by_test_id("send")).to_be_hidden()
    wait_for_answer_longer_than(page, 0)
    first = len(last_answer(page).strip())
    wait_for_answer_longer_than(page, first)
    shot(page, "streaming")

    # Stop aborts the request: the button goes away, the partial answer stays and stops growing.
    page.get_by_test_id("stop").click()
    wait_until_idle(page)
    stopped = last_answer(page)
    assert stopped.strip()
    page.wait_for_timeout(1000)
    assert last_answer(page) == stopped
    expect(page.get_by_test_id("message-assistant").last).to_contain_text("Stopped")
    shot(page, "stopped")

    # The UI is usable again: a short second turn finishes and shows its token usage.
    set_max_tokens(page, 24)
    send(page, "Name one color.")
    wait_until_idle(page)
    expect(page.get_by_test_id("message-assistant")).to_have_count(2)
    assert last_answer(page).strip()
    expect(page.get_by_test_id("usage")).to_have_text(re.compile(r"^\d+ tokens"))
    shot(page, "answer")

    # Regenerate replaces the last answer instead of adding one.
    page.get_by_test_id("regenerate").click()
    wait_until_idle(page)
    expect(page.get_by_test_id("message-assistant")).to_have_count(2)
    expect(page.get_by_test_id("regenerate")).to_have_count(1)

    # Editing the first message drops everything after it and resends.
    first_user = page.get_by_test_id("message-user").first
    first_user.hover()
    first_user.get_by_test_id("edit").click()
    page.get_by_test_id("edit-area").fill("Say hello.")
    page.get_by_test_id("edit-send").click()
    wait_until_idle(page)
    expect(page.get_by_test_id("message-user")).to_have_count(1)
    expect(page.get_by_test_id("message-user")).to_have_text("Say hello.")
    expect(page.get_by_test_id("message-assistant")).to_have_count(1)
    # The sidebar title follows the (edited) first message.
    expect(page.get_by_test_id("conversation")).to_have_count(1)
    expect(page.get_by_test_id("conversation")).to_have_text("Say hello.")


MALICIOUS = "\n\n".join(
    [
        "<img src=x onerror=\"window.__pwned='img'\">",
        "<script>window.__pwned='script'</script>",
        "[click me](javascript:window.__pwned='link')",
        '<a href="javascript:alert(1)">raw anchor</a>',
        "[safe](https://example.com/docs)",
        "```python\ndef f(x):\n    return '<b>' + x  # comment\n```",
    ]
)


def test_markdown_cannot_inject_html(page: Page) -> None:
    # The renderer itself, on a detached element.
    counts = page.evaluate(
        """async (source) => {
          const { renderMarkdown } = await import('/static/markdown.js');
          const box = document.createElement('div');
          box.innerHTML = renderMarkdown(source);
          const links = [...box.querySelectorAll('a')];
          return {
            img: box.querySelectorAll('img').length,
            script: box.querySelectorAll('script').length,
            unsafeHref: links.filter((a) => !/^https?:/.test(a.getAttribute('href'))).length,
            handlers: [...box.querySelectorAll('*')].filter((e) =>
              [...e.attributes].some((a) => a.name.startsWith('on'))).length,
            links: links.map((a) => [a.getAttribute('href'), a.rel, a.target]),
            text: box.textContent,
          };
        }""",
        MALICIOUS,
    )
    assert counts["img"] == 0
    assert counts["script"] == 0
    assert counts["unsafeHref"] == 0
    assert counts["handlers"] == 0
    assert counts["links"] == [["https://example.com/docs", "noopener noreferrer", "_blank"]]
    assert "<img src=x onerror=" in counts["text"]  # shown as text, not dropped
    assert "<script>" in counts["text"]

    # The same text as a stored assistant answer, through the page's real rendering path.
    seed_conversations(page, [conversation("x", "Show me tricky markdown", MALICIOUS, 1)])
    page.get_by_test_id("conversation").click()
    answer = page.get_by_test_id("message-assistant")
    expect(answer).to_contain_text("<img src=x onerror=")
    expect(answer.locator("img, script")).to_have_count(0)
    expect(answer.locator("a[href^='javascript']")).to_have_count(0)
    expect(answer.locator(".code-block .tok-keyword").first).to_have_text("def")
    expect(answer.get_by_role("button", name="Copy code")).to_be_visible()
    assert page.evaluate("window.__pwned") is None
    shot(page, "markdown")


def test_server_error_shows_banner(page: Page) -> None:
    expect(page.get_by_test_id("model-picker")).to_have_value(MODEL)
    # What the server itself says about this request, to compare with the banner.
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}
    response = page.request.post("/v1/chat/completions", data=body)
    assert response.status == 400
    server_message = response.json()["error"]["message"]

    set_max_tokens(page, 100000)
    send(page, "Hello?")
    banner = page.get_by_test_id("error-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(server_message)
    expect(page.get_by_test_id("message-assistant")).to_have_count(0)  # no empty answer left
    wait_until_idle(page)
    shot(page, "error")

    banner.get_by_role("button", name="Dismiss error").click()
    expect(banner).to_be_hidden()


def test_sidebar_search_delete_and_persistence(page: Page) -> None:
    seed_conversations(
        page,
        [
            conversation("a", "Plan a trip to Lisbon", "Day one: Alfama.", 2),
            conversation("b", "Explain SQL joins", "An inner join keeps matching rows.", 1),
        ],
    )
    items = page.get_by_test_id("conversation")
    expect(items).to_have_count(2)

    page.get_by_test_id("search").fill("alfama")  # matches message text, not only titles
    expect(items).to_have_count(1)
    expect(items).to_have_text("Plan a trip to Lisbon")
    page.get_by_test_id("search").fill("")
    expect(items).to_have_count(2)

    sql = items.filter(has_text="SQL joins")
    sql.click()
    expect(page.get_by_test_id("message-assistant")).to_have_text(
        "An inner join keeps matching rows."
    )

    # Delete takes two clicks, then survives a reload.
    delete = sql.get_by_role("button", name=re.compile("delete", re.I))
    delete.click()
    delete.click()
    expect(items).to_have_count(1)
    expect(page.get_by_test_id("message-assistant")).to_have_count(0)
    page.reload()
    expect(items).to_have_count(1)

    page.get_by_test_id("new-chat").click()
    expect(page.get_by_test_id("composer")).to_be_focused()


def test_mobile_layout(browser: Browser, live_server) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = open_page(
        browser, live_server.base_url, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        sidebar = page.locator("#sidebar")
        expect(page.get_by_test_id("composer")).to_be_visible()
        expect(page.get_by_test_id("model-picker")).to_have_value(MODEL)
        assert sidebar.bounding_box()["x"] + sidebar.bounding_box()["width"] <= 0  # off-canvas
        shot(page, "mobile")
        page.get_by_role("button", name="Open sidebar").click()
        wait_for_js(page, "document.getElementById('sidebar').getBoundingClientRect().x === 0")
        expect(page.get_by_test_id("new-chat")).to_be_in_viewport()
        shot(page, "mobile-sidebar")
        page.get_by_test_id("new-chat").click()
        expect(page.get_by_test_id("new-chat")).not_to_be_in_viewport()
    finally:
        page.context.close()
    assert errors == []


ZEPHYR = """# Zephyr project handbook

## Access

The secret code word of the Zephyr project is BLUEBIRD-42. Say it at the front desk.

## Lunch

Lunch in the Zephyr office is served at noon on the third floor.
"""
REFUSAL = "I don't know based on the provided documents."


def test_grounded_answers_with_citations(
    scripted_page: Page, scripted_server, tmp_path: Path
) -> None:
    page = scripted_page
    name = f"ui-{uuid.uuid4().hex[:8]}"
    doc = tmp_path / f"zephyr-{name}.md"
    doc.write_text(ZEPHYR)
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ\x90\x00")
    # The scripted server answers the code-word question citing the passage that holds it
    # (tests/e2e/conftest.py). The UI's settings are written before the page's own scripts
    # run on every load: set from a running page, the app could save its in-memory settings
    # over it on the way out.
    settings = json.dumps({"maxTokens": 40, "temperature": 0})
    page.context.add_init_script(f"localStorage.setItem({SETTINGS_KEY!r}, {settings!r})")
    page.reload()
    picker = page.get_by_test_id("collection-picker")
    composer = page.get_by_test_id("composer")
    try:
        # A new collection from the picker's own entry; the chat switches to it.
        expect(picker).to_have_value("")
        expect(composer).to_have_attribute("placeholder", "Message chatworks")
        picker.select_option(page.get_by_test_id("new-collection").get_attribute("value"))
        page.get_by_test_id("collection-name").fill(name)
        page.get_by_test_id("collection-create").click()
        expect(picker).to_have_value(name)
        expect(composer).to_have_attribute("placeholder", f"Ask {name}…")

        # Upload through the paperclip's file input: one toast per file, with the outcome.
        page.get_by_test_id("upload-input").set_input_files([str(doc), str(bad)])
        toasts = page.get_by_test_id("toast")
        expect(toasts.filter(has_text=doc.name)).to_contain_text(
            re.compile(r"Added, \d+ chunks?"), timeout=120_000
        )
        rejected = toasts.filter(has_text=bad.name)
        expect(rejected).to_contain_text("unsupported", ignore_case=True)
        rejected.get_by_role("button", name="Dismiss").click()  # errors stay until dismissed
        expect(rejected).to_have_count(0)
        expect(picker.locator(f"option[value='{name}']")).to_have_text(f"{name} (1)")

        # A grounded answer: chips name the uploaded file; a chip opens the quoted passage.
        send(page, "What is the secret code word of the Zephyr project?")
        wait_until_idle(page)
        answer = page.get_by_test_id("message-assistant").last
        chip = answer.get_by_test_id("citation").filter(has_text=doc.name).first
        # Regenerate must stay in ask mode and give the same greedy, cited answer.
        page.get_by_test_id("regenerate").click()
        wait_until_idle(page)
        expect(page.get_by_test_id("message-assistant")).to_have_count(1)
        expect(chip).to_be_visible()
        expect(chip).to_contain_text(re.compile(r"^\[\d+\] "))
        shot(page, "citations")
        chip.click()
        panel = answer.get_by_test_id("citation-panel")
        expect(panel).to_be_visible()
        expect(panel).to_contain_text("BLUEBIRD-42")
        expect(panel).to_contain_text("Access")
        expect(panel).to_contain_text(doc.name)
        expect(panel).to_contain_text(re.compile(r"Characters\s*\d+\u2013\d+"))
        shot(page, "citation-panel")
        chip.click()  # the same chip closes it again
        expect(panel).to_have_count(0)

        # Nothing relevant: a muted refusal without chips; regenerating it changes nothing.
        send(page, "What is the orbital period of Neptune?")
        wait_until_idle(page)
        refused = page.get_by_test_id("message-assistant").last
        expect(refused).to_contain_text(REFUSAL)
        expect(refused).to_have_class(re.compile(r"\brefused\b"))
        expect(refused.get_by_test_id("citation")).to_have_count(0)
        page.get_by_test_id("regenerate").click()
        wait_until_idle(page)
        expect(page.get_by_test_id("message-assistant")).to_have_count(2)
        expect(page.get_by_test_id("message-assistant").last).to_contain_text(REFUSAL)
        shot(page, "refusal")

        # History keeps the answers, their citations and the chat's collection across a reload.
        stored = page.evaluate(f"JSON.parse(localStorage.getItem('{STORAGE_KEY}'))")
        assert stored[0]["collection"] == name
        assert stored[0]["messages"][1]["citations"][0]["quote"]
        page.reload()
        page.get_by_test_id("conversation").first.click()
        expect(picker).to_have_value(name)
        expect(
            page.get_by_test_id("message-assistant").first.get_by_test_id("citation")
        ).not_to_have_count(0)

        # Back to plain chat for this conversation only when chosen.
        picker.select_option("")
        expect(composer).to_have_attribute("placeholder", "Message chatworks")
    finally:
        httpx.delete(f"{scripted_server.api_url}/collections/{name}", timeout=30)
