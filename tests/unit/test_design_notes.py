"""The system-design notes (docs/design/) name real files and real settings.

A note that points at a module which was renamed, or at a `CHATWORKS_*` variable that no longer
exists, teaches the reader something false; these checks fail the suite instead. They check that
every repository path written in backticks (`src/...`, `deploy/...`, `docs/...`, `bench/...`,
`tests/...`, `scripts/...`) exists; that every `CHATWORKS_*` name anywhere in a note is a field
of `Settings` (the env prefix is CHATWORKS_, so CHATWORKS_RAG_TOP_K is the field rag_top_k);
that each note has the sections the index promises; and that the index lists every note. A
setting a note merely proposes is written without the prefix (e.g. "a `tenant_token_budget`
setting"), so it cannot pass for a real one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatworks.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design"
NOTES = sorted(DESIGN.glob("[0-9][0-9]-*.md"))
SECTIONS = ("## Requirements", "## Capacity math", "## Components", "## Failure modes")
SECTIONS += ("## Where to go next",)

_CODE = re.compile(r"`([^`\n]+)`")
# A path starts a backtick span or follows a space/quote/paren inside one ("cat deploy/x.yaml").
_PATH = re.compile(r"(?:^|(?<=[\s(\"'=]))((?:src|deploy|docs|bench|tests|scripts)/[\w./-]*)")
_ENV = re.compile(r"\bCHATWORKS_[A-Z0-9_]+\b")


def paths_in(text: str) -> set[str]:
    """Repository paths written in backticks, without a trailing dot, colon or slash."""
    found = set()
    for span in _CODE.findall(text):
        for path in _PATH.findall(span):
            found.add(path.rstrip(".:,/"))
    return found


def env_vars_in(text: str) -> set[str]:
    return set(_ENV.findall(text))


def test_there_are_ten_notes_and_the_index_lists_each():
    assert len(NOTES) == 10, [n.name for n in NOTES]
    index = (DESIGN / "README.md").read_text()
    missing = [n.name for n in NOTES if f"({n.name})" not in index]
    assert not missing, f"docs/design/README.md does not link {missing}"


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.name)
def test_note_has_the_promised_sections(note):
    text = note.read_text()
    assert [s for s in SECTIONS if s not in text] == []


@pytest.mark.parametrize("note", [*NOTES, DESIGN / "README.md"], ids=lambda p: p.name)
def test_every_path_named_exists(note):
    missing = sorted(p for p in paths_in(note.read_text()) if not (ROOT / p).exists())
    assert not missing, f"{note.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("note", [*NOTES, DESIGN / "README.md"], ids=lambda p: p.name)
def test_every_chatworks_variable_is_a_setting(note):
    fields = set(Settings.model_fields)
    named = env_vars_in(note.read_text())
    unknown = sorted(v for v in named if v.removeprefix("CHATWORKS_").lower() not in fields)
    assert not unknown, f"{note.name} names settings that Settings does not have: {unknown}"


def test_the_checks_catch_what_they_are_for():
    """The extractors see a path after a command inside backticks, and a bogus setting."""
    text = "Run `cat deploy/k8s/base/hpa.yaml` and see `src/chatworks/rag/`; `rag/retrieve.py`."
    assert paths_in(text) == {"deploy/k8s/base/hpa.yaml", "src/chatworks/rag"}
    assert env_vars_in("set CHATWORKS_RAG_TOP_K and CHATWORKS_NOPE.") == {
        "CHATWORKS_RAG_TOP_K",
        "CHATWORKS_NOPE",
    }
    assert "nope" not in Settings.model_fields
