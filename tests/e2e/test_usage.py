"""Usage per key, model and day: counted by the server at the end of each request, read back
through `GET /v1/usage` (own usage for a key, everyone's for an admin) and `chatworks usage`."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, create_key, secured_env
from tests.servers import REPO

pytestmark = pytest.mark.e2e


def _chat(server, secret: str, text: str) -> dict:
    body = {"model": "scripted", "messages": [{"role": "user", "content": text}]}
    r = httpx.post(f"{server.api_url}/chat/completions", json=body, timeout=60,
                   headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()["usage"]


def _usage(server, secret: str, **params) -> httpx.Response:
    return httpx.get(f"{server.api_url}/usage", params=params, timeout=30,
                     headers={"Authorization": f"Bearer {secret}"})  # fmt: skip


def test_usage_is_counted_per_key_and_visible_to_its_key_and_admins(secured_server,
                                                                     secured_data):  # fmt: skip
    a_id, a = create_key(secured_server, name="usage-a", scopes=["chat"])
    b_id, b = create_key(secured_server, name="usage-b", scopes=["chat"])
    first = _chat(secured_server, a, "one two three")
    second = _chat(secured_server, a, "four five")
    _chat(secured_server, b, "six")

    mine = _usage(secured_server, a)
    assert mine.status_code == 200, mine.text
    [row] = mine.json()["data"]  # only A's key, one model, today
    assert (row["key_id"], row["model"], row["requests"]) == (a_id, "scripted", 2)
    assert row["prompt_tokens"] == first["prompt_tokens"] + second["prompt_tokens"]
    assert row["completion_tokens"] == first["completion_tokens"] + second["completion_tokens"]
    assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]

    assert _usage(secured_server, a, key_id=b_id).status_code == 403  # not an admin
    everyone = {r["key_id"] for r in _usage(secured_server, ADMIN_KEY).json()["data"]}
    assert {a_id, b_id} <= everyone
    [b_row] = _usage(secured_server, ADMIN_KEY, key_id=b_id).json()["data"]
    assert b_row["requests"] == 1
    assert _usage(secured_server, a, days=0).status_code == 400

    env = {**os.environ, **secured_env(secured_data), "COLUMNS": "200"}  # no wrapped ids
    command = [sys.executable, "-m", "chatworks.cli", "usage", "--key", a_id]
    shown = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert a_id in shown.stdout and b_id not in shown.stdout
    assert str(row["total_tokens"]) in shown.stdout
