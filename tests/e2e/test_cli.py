"""The `chatworks` CLI as a user runs it, against the live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from chatworks.cli import app
from tests.e2e.conftest import MODEL

pytestmark = pytest.mark.e2e


def cli(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatworks.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_models_against_a_server(live_server):
    result = cli("models", "--url", live_server.api_url)
    assert result.returncode == 0 and result.stdout.split() == [MODEL]


def test_terminal_chat_streams_answers_until_an_empty_line(live_server):
    result = cli(
        "chat", "--url", live_server.api_url, "--model", MODEL, "--temperature", "0",
        "--max-tokens", "20", stdin="What is the capital of France?\n\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, _, answer = result.stdout.partition("\n")
    assert header.startswith(f"chatting with {MODEL}")
    assert answer.strip()  # the streamed answer (what it says is an eval, not a test)


COMMANDS = [
    "serve", "chat", "models", "ingest", "collections", "ask", "export", "eval retrieval",
    "eval answers", "eval probes", "eval run", "eval new", "eval judge-agreement",
    "train tokenizer", "train data", "train base", "train sft", "train eval", "train run",
    "spark prep", "spark embed",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_ingest_collections_and_a_refused_ask_in_a_fresh_data_dir(tmp_path):
    """The documents commands as the README shows them; an off-topic question is refused by
    the relevance floor before any model loads."""
    env = {"CHATWORKS_DATA_DIR": str(tmp_path / "data")}
    doc = tmp_path / "notes.md"
    doc.write_text("# Tea\n\nGreen tea is steeped at 80 degrees for two minutes.\n")
    ingested = cli("ingest", str(doc), "--collection", "notes", env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert "1 added" in ingested.stdout
    again = cli("ingest", str(doc), "--collection", "notes", env=env)
    assert "1 unchanged" in again.stdout  # idempotent
    listed = cli("collections", env=env)
    assert listed.stdout.split() == ["notes", "1", "documents"]
    asked = cli("ask", "Who won the 1998 football world cup?", "--collection", "notes", "--json",
                env=env)  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["refused"] is True


def test_invalid_settings_are_one_line_errors_not_tracebacks():
    result = cli("serve", "--port", "70000")
    assert result.returncode == 2
    assert "error: port" in result.stdout and "Traceback" not in result.stdout + result.stderr
