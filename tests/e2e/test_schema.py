"""Schemathesis, every check and every phase, against a real server with auth required and the
admin key: no 5xx, every status code and content type the API answers is in its OpenAPI
schema, schema-valid requests are accepted and invalid ones refused (tests/schemathesis.toml
says what a schema cannot: an upload's file type is in its bytes). The seed is fixed so a
failure reproduces; run `st run` without it to explore further."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN_KEY, secured_env
from tests.servers import REPO, start_server

pytestmark = pytest.mark.e2e

ST = Path(sys.executable).parent / "st"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Its own server: schemathesis creates and deletes keys, collections and documents."""
    server = start_server("schema", secured_env(tmp_path_factory.mktemp("schema")))
    yield server
    server.stop()


def test_schemathesis_finds_nothing(server, tmp_path):
    run = subprocess.run(
        [str(ST), "--config-file", str(REPO / "tests" / "schemathesis.toml"), "run",
         f"{server.base_url}/openapi.json", "-H", f"Authorization: Bearer {ADMIN_KEY}",
         "--checks", "all", "--workers", "1", "--max-examples", "50", "--seed", "1",
         "--request-retries", "2", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    [report] = tmp_path.glob("junit-*.xml")
    suite = ET.parse(report).getroot().find("testsuite")
    assert int(suite.get("tests")) >= 18  # every operation was reached
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0"), run.stdout[-6000:]
    assert run.returncode == 0, run.stdout[-6000:]
