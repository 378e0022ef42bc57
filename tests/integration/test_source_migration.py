"""Migration 0004 on SQLite and Postgres: documents stored by the server's absolute path (as
ingestion wrote them before) get the relative names ingestion gives now, in place: same rows,
same ids, same chunks; and `make run`'s next ingest finds every file unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chatworks.rag.embed import LocalEmbedder
from chatworks.rag.ingest import IngestContext, ingest_path
from chatworks.settings import Settings
from chatworks.storage import create_engine
from chatworks.storage.db import upgrade
from chatworks.storage.documents import list_documents
from chatworks.storage.models import JsonDict

# The tables as revision 0003 left them (what the previous code wrote into).
COLLECTIONS = sa.table(
    "collections", sa.column("id", sa.Integer), sa.column("name", sa.String),
    sa.column("owner", sa.String), sa.column("created_at", sa.DateTime(timezone=True)),
)  # fmt: skip
DOCUMENTS = sa.table(
    "documents", sa.column("id", sa.String), sa.column("collection_id", sa.Integer),
    sa.column("source", sa.String), sa.column("title", sa.String),
    sa.column("content_hash", sa.String), sa.column("metadata", JsonDict),
    sa.column("status", sa.String), sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)  # fmt: skip
CHUNKS = sa.table(
    "chunks", sa.column("document_id", sa.String), sa.column("ordinal", sa.Integer),
    sa.column("text", sa.Text), sa.column("start_char", sa.Integer),
    sa.column("end_char", sa.Integer), sa.column("metadata", JsonDict),
)  # fmt: skip


def old_database(url: str, collections: dict[str, list[tuple[str, str, str]]]) -> sa.Engine:
    """A database at revision 0003 holding `collections`: name -> [(id, source, hash)]."""
    engine = create_engine(url)
    upgrade(engine, "0003")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for cid, (name, documents) in enumerate(collections.items(), start=1):
            conn.execute(sa.insert(COLLECTIONS).values(id=cid, name=name, owner="default",
                                                       created_at=now))  # fmt: skip
            for document_id, source, content_hash in documents:
                conn.execute(sa.insert(DOCUMENTS).values(
                    id=document_id, collection_id=cid, source=source, title=Path(source).stem,
                    content_hash=content_hash, metadata={}, status="ready", created_at=now,
                    updated_at=now,
                ))  # fmt: skip
                conn.execute(sa.insert(CHUNKS).values(
                    document_id=document_id, ordinal=0, text=f"text of {document_id}",
                    start_char=0, end_char=10, metadata={},
                ))  # fmt: skip
    return engine


def stored(engine: sa.Engine) -> dict[str, tuple[str, str, str, int]]:
    """id -> (collection, source, origin, chunks)."""
    query = sa.text(
        "SELECT d.id, c.name, d.source, d.origin, "
        "(SELECT count(*) FROM chunks k WHERE k.document_id = d.id) "
        "FROM documents d JOIN collections c ON c.id = d.collection_id"
    )
    with engine.connect() as conn:
        return {i: (name, source, origin, n) for i, name, source, origin, n in conn.execute(query)}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'chatworks.db'}"
    return request.getfixturevalue("postgres_url")


def test_absolute_sources_become_relative_in_place(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "chatworks"  # where `make run` runs, and so migrates, from
    repo.mkdir()
    monkeypatch.chdir(repo)
    engine = old_database(url, {
        "chatworks-docs": [
            ("d1", f"{repo}/docs/operations/slo.md", "h1"),
            ("d2", f"{repo}/README.md", "h2"),
            ("d3", "README.md", "h3"),  # an upload that already has the short name
            ("d4", "/srv/kb/handbook/leave.md", "h4"),  # outside the current directory
            ("d5", "/srv/kb/handbook/policies/travel.md", "h5"),
        ],
        "other": [("d6", f"{repo}/docs/operations/slo.md", "h1"), ("d7", "notes.txt", "h7")],
    })  # fmt: skip
    upgrade(engine)
    assert stored(engine) == {
        "d1": ("chatworks-docs", "docs/operations/slo.md", "file", 1),
        "d2": ("chatworks-docs", "chatworks/README.md", "file", 1),  # the upload kept its name
        "d3": ("chatworks-docs", "README.md", "upload", 1),
        "d4": ("chatworks-docs", "handbook/leave.md", "file", 1),
        "d5": ("chatworks-docs", "handbook/policies/travel.md", "file", 1),
        "d6": ("other", "docs/operations/slo.md", "file", 1),
        "d7": ("other", "notes.txt", "upload", 1),
    }
    upgrade(engine)  # at head already: nothing changes
    assert {i: s for i, (_, s, _, _) in stored(engine).items()}["d1"] == "docs/operations/slo.md"
    engine.dispose()


def test_migrating_from_the_filesystem_root_keeps_names_short(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")  # a service's working directory: not a place files are named from
    engine = old_database(url, {"kb": [("a", "/srv/kb/faq.md", "h"), ("b", "/srv/kb/x/y.md", "h")]})
    upgrade(engine)
    assert {i: s for i, (_, s, _, _) in stored(engine).items()} == {
        "a": "kb/faq.md",
        "b": "kb/x/y.md",
    }
    engine.dispose()


def test_make_runs_next_ingest_after_the_migration_finds_every_file_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "chatworks"
    (repo / "docs" / "operations").mkdir(parents=True)
    (repo / "docs" / "operations" / "slo.md").write_text("# SLOs\n\nAvailability is 99.5%.\n")
    (repo / "README.md").write_text("# chatworks\n\nRun make run.\n")
    monkeypatch.chdir(repo)
    settings = Settings(data_dir=tmp_path / "new")
    embedder = LocalEmbedder.from_settings(settings)
    arguments = [Path("docs"), Path("README.md")]
    # What today's code stores, then the same rows as the previous code stored them.
    today = IngestContext.from_settings(settings, embedder=embedder)
    ingest_path(today, arguments, "chatworks-docs")
    with Session(today.index.engine) as session:
        rows = list_documents(session, "chatworks-docs")
    old = old_database(f"sqlite:///{tmp_path / 'old' / 'chatworks.db'}", {
        "chatworks-docs": [(d.id, str(repo / d.source), d.content_hash) for d in rows],
    })  # fmt: skip
    upgrade(old)
    ctx = IngestContext.from_settings(settings, engine=old, embedder=embedder)
    rerun = ingest_path(ctx, arguments, "chatworks-docs", prune=True)
    assert (rerun.added, rerun.updated, rerun.unchanged, rerun.deleted) == (0, 0, 2, 0)
    assert {i: s for i, (_, s, _, _) in stored(old).items()} == {d.id: d.source for d in rows}
