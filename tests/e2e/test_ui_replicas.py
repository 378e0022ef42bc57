"""The web UI through HAProxy in front of two scripted replicas: every turn of a UI conversation
carries that conversation's id (`X-Session-Id`) and reaches one replica, and a new chat gets an
id of its own (deploy/haproxy/haproxy.cfg, docs/operations/deploy.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Response

from tests.e2e import test_ui
from tests.e2e.test_replicas import replicas_behind_haproxy
from tests.e2e.test_ui import desktop_page, send, wait_until_idle

pytestmark = pytest.mark.e2e

browser = test_ui.browser  # the same module-scoped Chromium fixture


@pytest.fixture
def page(browser: Browser, tmp_path, postgres_url, redis_url) -> Iterator[Page]:
    shared = {"CHATWORKS_DATABASE_URL": postgres_url, "CHATWORKS_REDIS_URL": redis_url}
    with replicas_behind_haproxy("ui", tmp_path, {"a": shared, "b": shared}) as (_, lb, _):
        yield from desktop_page(browser, lb)


def test_every_turn_of_a_ui_conversation_reaches_one_replica(page: Page) -> None:
    chats: list[tuple[str | None, str | None]] = []  # (session id, replica) of each turn

    def seen(response: Response) -> None:
        if response.url.endswith("/v1/chat/completions"):
            chats.append((response.request.headers.get("x-session-id"),
                          response.headers.get("x-chatworks-replica")))  # fmt: skip

    page.on("response", seen)
    for c in range(4):
        for turn in range(3):
            send(page, f"Chat {c}, message {turn}")
            wait_until_idle(page)
        page.get_by_test_id("new-chat").click()

    replicas_of = defaultdict(set)
    for session, replica in chats:
        replicas_of[session].add(replica)
    assert len(chats) == 12 and None not in replicas_of, "every turn names its conversation"
    assert len(replicas_of) == 4, "one id per conversation, a new one per new chat"
    assert all(len(replicas) == 1 for replicas in replicas_of.values()), replicas_of
