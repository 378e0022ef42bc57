"""No absolute path of the server's disk reaches a client (issue 32): documents ingested with
`chatworks ingest` from a temp directory are named relative to where they were ingested in
every response that names them (the documents list, `/v1/ask` and chat completions with a
collection, streamed or not), in the page, and in `chatworks ask`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import scripted_env
from tests.e2e.test_documents_api import CODE_WORD, FACTS, TRAP
from tests.servers import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.kernels]  # retrieval ranks ride on embedder numerics

COLLECTION = "handbook"


def chatworks(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatworks.cli", *args], capture_output=True, text=True,
        timeout=300, env={**os.environ, **env}, cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temp directory the documents come from: its path must appear in no response."""
    return tmp_path_factory.mktemp("server-disk")


@pytest.fixture(scope="module")
def ingested(disk: Path) -> tuple[dict[str, str], Path]:
    """(environment, working directory): `handbook/` ingested by a relative path from the
    working directory, `notes.md` by its absolute path from outside it."""
    workdir = disk / "work"
    (workdir / "handbook" / "office").mkdir(parents=True)
    (workdir / "handbook" / "office" / "zephyr.md").write_text(FACTS)
    (disk / "outside").mkdir()
    (disk / "outside" / "notes.md").write_text(TRAP)
    (disk / "data").mkdir()
    env = scripted_env(disk / "data")
    result = chatworks("ingest", "handbook", str(disk / "outside" / "notes.md"),
                       "--collection", COLLECTION, env=env, cwd=workdir)  # fmt: skip
    assert result.returncode == 0 and "2 added" in result.stdout, result.stdout + result.stderr
    return env, workdir


@pytest.fixture(scope="module")
def server(ingested):
    server = start_server("sources", ingested[0])
    yield server
    server.stop()


def assert_no_server_path(body: str, disk: Path) -> None:
    # Everything of the test's lives under `disk`: the files, the data directory, the script.
    for path in {str(disk), str(disk.resolve())}:
        assert path not in body


def test_no_response_names_a_path_of_the_servers_disk(server, disk: Path) -> None:
    base = server.api_url
    upload = httpx.post(
        f"{base}/collections/{COLLECTION}/documents",
        files={"file": ("faq.md", b"# FAQ\n\nThe office opens at nine.\n", "text/markdown")},
        timeout=120,
    )
    assert upload.status_code == 201 and upload.json()["source"] == "faq.md"
    listed = httpx.get(f"{base}/collections/{COLLECTION}/documents")
    assert sorted(d["source"] for d in listed.json()["data"]) == [
        "faq.md", "handbook/office/zephyr.md", "notes.md",
    ]  # fmt: skip

    question = {"question": CODE_WORD, "collection": COLLECTION, "max_tokens": 40}
    asked = httpx.post(f"{base}/ask", json=question, timeout=120)
    assert [c["source"] for c in asked.json()["citations"]] == ["handbook/office/zephyr.md"]
    streamed = httpx.post(f"{base}/ask", json={**question, "stream": True}, timeout=120)
    assert "handbook/office/zephyr.md" in streamed.text

    chat = {"model": "scripted", "messages": [{"role": "user", "content": CODE_WORD}],
            "max_tokens": 40, "collection": COLLECTION}  # fmt: skip
    completion = httpx.post(f"{base}/chat/completions", json=chat, timeout=120)
    assert [c["source"] for c in completion.json()["citations"]] == ["handbook/office/zephyr.md"]
    chunks = httpx.post(f"{base}/chat/completions", json={**chat, "stream": True}, timeout=120)
    assert "handbook/office/zephyr.md" in chunks.text

    page = httpx.get(server.base_url)
    collections = httpx.get(f"{base}/collections")
    for response in (upload, listed, asked, streamed, completion, chunks, page, collections):
        assert response.status_code == 200 or response is upload, response.text
        assert_no_server_path(response.text, disk)


def test_the_cli_cites_the_same_names_from_anywhere(ingested, disk: Path) -> None:
    env, _ = ingested
    asked = chatworks("ask", CODE_WORD, "--collection", COLLECTION, "--json", env=env, cwd=disk)
    assert asked.returncode == 0, asked.stderr
    result = json.loads(asked.stdout)
    assert [c["source"] for c in result["citations"]] == ["handbook/office/zephyr.md"]
    assert_no_server_path(asked.stdout, disk)
