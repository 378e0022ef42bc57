"""The `chatworks` CLI as a user runs it, against the live server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import MODEL

pytestmark = pytest.mark.e2e


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatworks.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=120,
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
    assert "Paris" in result.stdout


@pytest.mark.parametrize("command", ["serve", "chat", "models"])
def test_every_command_has_help(command):
    result = cli(command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout
