"""No SQL statement runs on the event loop's thread: every database call reached from an async
handler goes through `storage.db.Database` (a worker thread), so a slow query stalls only its
own request. Every route is driven in process, with keys on (key lookups, limits, usage, audit
all touch the database), and each statement records the thread it ran on."""

from __future__ import annotations

import asyncio
import time

from fastapi.testclient import TestClient
from sqlalchemy import event

from chatworks.api.app import create_app
from chatworks.settings import Settings

ADMIN = {"X-API-Key": "cw-loop-admin-0123456789abcdef"}


def on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_no_statement_runs_on_the_event_loop(tmp_path):
    (tmp_path / "s.json").write_text('{"rules": []}')
    settings = Settings(data_dir=tmp_path, provider="scripted", script_path=tmp_path / "s.json",
                        auth="required", admin_key=ADMIN["X-API-Key"], _env_file=None)  # fmt: skip
    app = create_app(settings)
    blocking: list[str] = []
    engine = app.state.service.library.engine
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: on_the_loop() and blocking.append(sql))  # fmt: skip
    with TestClient(app, base_url="http://127.0.0.1") as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        made = client.post("/v1/keys", headers=ADMIN, json={
            "name": "loop", "scopes": ["chat", "documents"], "budget_tokens": 10**6, "rpm": 1000,
        })  # fmt: skip
        assert made.status_code == 201, made.text
        key = {"Authorization": f"Bearer {made.json()['secret']}"}
        ask = {"question": "When does the gate open?", "collection": "loop"}
        chat = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
        calls = [
            ("POST", "/v1/collections", {"json": {"name": "loop"}}),
            ("POST", "/v1/collections/loop/documents",
             {"files": {"file": ("gate.md", b"# Gate\n\nThe gate opens at eight.\n")}}),
            ("GET", "/v1/collections", {}),
            ("GET", "/v1/collections/loop/documents", {}),
            ("POST", "/v1/ask", {"json": ask}),
            ("POST", "/v1/ask", {"json": {**ask, "stream": True}}),
            ("POST", "/v1/chat/completions", {"json": {**chat, "collection": "loop"}}),
            ("POST", "/v1/chat/completions", {"json": {**chat, "temperature": 0}}),
            ("POST", "/v1/chat/completions", {"json": {**chat, "stream": True}}),
            ("POST", "/v1/completions", {"json": {"model": "scripted", "prompt": "hi"}}),
            ("POST", "/v1/embeddings", {"json": {"model": "all-minilm-l6-v2", "input": "x"}}),
            ("POST", "/v1/moderations", {"json": {"input": "hello"}}),
            ("GET", "/v1/models", {}),
            ("GET", "/v1/usage", {}),
            ("DELETE", "/v1/collections/loop", {}),
        ]  # fmt: skip
        for method, path, body in calls:
            r = client.request(method, path, headers=key, **body)
            assert r.status_code < 300, (method, path, r.status_code, r.text)
        for method, path in [
            ("GET", "/v1/keys"),
            ("GET", "/v1/audit"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
            ("DELETE", f"/v1/keys/{made.json()['id']}"),
        ]:
            assert client.request(method, path, headers=ADMIN).status_code < 300, path
    assert blocking == []
