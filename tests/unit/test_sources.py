"""How files from disk are named in a collection (`rag/sources.py`): from the current directory
when inside it, from the argument's parent otherwise, never with the machine's absolute path."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatworks.rag.sources import find, within

TYPES = {"md", "txt"}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with docs, a README and things that are not ingested; the current directory."""
    root = tmp_path / "repo"
    (root / "docs" / "operations").mkdir(parents=True)
    (root / "docs" / "index.md").write_text("# Docs")
    (root / "docs" / "operations" / "slo.md").write_text("# SLOs")
    (root / "docs" / ".drafts").mkdir()
    (root / "docs" / ".drafts" / "wip.md").write_text("hidden")
    (root / "docs" / "logo.png").write_bytes(b"\x89PNG")
    (root / "README.md").write_text("# Readme")
    monkeypatch.chdir(root)
    return root


def names(*paths: str | Path, root: Path | None = None) -> list[str]:
    found, _ = find([Path(p) for p in paths], TYPES, root)
    assert all(f.problem is None for f in found), found
    return [f.source for f in found]


def test_files_inside_the_current_directory_are_named_from_it(repo: Path) -> None:
    make_run = ["docs/index.md", "docs/operations/slo.md", "README.md"]
    assert names("docs", "README.md") == make_run
    # However the argument is written, a file has one name.
    assert names(repo / "docs", repo / "README.md") == make_run
    assert names("./docs/../docs", "./README.md") == make_run
    assert names("docs/operations") == ["docs/operations/slo.md"]
    assert sorted(names(".")) == sorted(make_run)
    assert not any(str(repo) in n or n.startswith("/") for n in names(repo))


def test_files_outside_it_are_named_from_their_arguments_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handbook = tmp_path / "kb" / "handbook"
    (handbook / "policies").mkdir(parents=True)
    (handbook / "leave.md").write_text("# Leave")
    (handbook / "policies" / "travel.md").write_text("# Travel")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    expected = ["handbook/leave.md", "handbook/policies/travel.md"]
    assert names(handbook) == expected
    assert names("../kb/handbook") == expected
    assert names(handbook / "leave.md") == ["leave.md"]
    # The filesystem root is no current directory: names stay short from there too.
    monkeypatch.chdir("/")
    assert names(handbook) == expected


def test_directories_given_are_what_prune_looks_under(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "kb"
    outside.mkdir()
    _, directories = find([Path("."), Path("docs/operations"), outside, Path("README.md")], TYPES)
    assert directories == ["", "docs/operations", "kb"]
    assert within("docs/operations/slo.md", "docs/operations")
    assert not within("docs/operations-old/slo.md", "docs/operations")
    assert within("anything/at/all.md", "")  # `.`: the whole collection


def test_a_file_reached_twice_is_found_once_and_two_files_never_share_a_name(
    repo: Path, tmp_path: Path
) -> None:
    assert names("docs", "docs/index.md", repo / "docs" / "index.md") == [
        "docs/index.md",
        "docs/operations/slo.md",
    ]
    other = tmp_path / "other" / "docs"
    other.mkdir(parents=True)
    (other / "index.md").write_text("# Another index")
    found, _ = find([Path("docs"), other], TYPES)
    clash = [f for f in found if f.problem]
    assert [(f.path, f.source) for f in clash] == [(other / "index.md", "docs/index.md")]
    assert "already" in clash[0].problem


def test_an_explicit_root_names_everything_under_it(repo: Path, tmp_path: Path) -> None:
    docs = repo / "docs"
    assert names(docs / "operations" / "slo.md", docs / "index.md", root=docs) == [
        "operations/slo.md",
        "index.md",
    ]
    stray = tmp_path / "stray.md"
    stray.write_text("# Stray")
    [found] = find([stray], TYPES, root=docs)[0]
    assert found.source == "" and "not under the root" in found.problem
