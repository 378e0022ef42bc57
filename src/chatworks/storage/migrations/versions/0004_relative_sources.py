"""Document sources relative to where they were ingested, not the server's absolute paths; a
column that says which documents came from disk.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

Citations show a document's `source` to clients, and files ingested from disk were stored by
their absolute path (`/home/me/chatworks/docs/operations/slo.md`). This renames every absolute
source the way `chatworks ingest` now names files (`rag/sources.py`), in place: the row, its
id and its chunks stay, so citations and `/v1/documents/{id}` links stay valid.

- A path inside the current directory of the process that migrates (`chatworks migrate`, or
  `serve` or `ingest`, whichever opens the database first) is named from there. `make run`
  migrates from the repository, so `/home/me/chatworks/docs/x.md` becomes `docs/x.md`: what its
  next `chatworks ingest docs README.md` names the file, which then finds it unchanged. The
  filesystem root does not count as a current directory (it would keep whole paths).
- Any other path is named from the parent of the common directory of its collection's
  remaining paths, as if that directory had been the argument: `/srv/kb/handbook/leave.md`
  becomes `handbook/leave.md`, what `chatworks ingest /srv/kb/handbook` gives from anywhere.
- A name another document of the same collection already has (an upload called `README.md`)
  gets parent directories prepended until it is unique (`chatworks/README.md`); in the
  unlikely case none is, the source stays as it was. No row is dropped, merged or duplicated.

Only files from disk were ever stored by an absolute path, so exactly those rows get
`origin` = "file" (what `--prune` may delete); the others are uploads.
The migration cannot know which arguments an ingest will use next; when the names differ
(say, `chatworks ingest /home/me/chatworks/docs/operations` from the repository names
`operations/slo.md`), that ingest adds the files again under its names and the renamed
documents stay until deleted (README, "Answers from your documents").
Downgrade drops the column and leaves the names relative: the absolute paths are not kept.
"""

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_documents = sa.table(
    "documents", sa.column("id", sa.String), sa.column("collection_id", sa.Integer),
    sa.column("source", sa.String), sa.column("origin", sa.String),
)  # fmt: skip


def _unique(path: Path, base: Path, taken: set[str]) -> str | None:
    """`path` relative to `base`, or with more of its parents if that name is taken."""
    parts = path.parts[1:]  # without the root ("/")
    for length in range(len(path.relative_to(base).parts), len(parts) + 1):
        candidate = "/".join(parts[len(parts) - length :])
        if candidate not in taken:
            return candidate
    return None


def relative_sources(rows: Iterable[tuple[str, int, str]], cwd: Path) -> dict[str, str]:
    """New sources by document id for the (id, collection id, source) rows whose source is an
    absolute path; an absolute source missing from the result could not be renamed."""
    collections: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for document_id, collection_id, source in rows:
        collections[collection_id].append((document_id, source))
    inside = (lambda p: p.is_relative_to(cwd)) if cwd.parent != cwd else (lambda p: False)
    renamed: dict[str, str] = {}
    for documents in collections.values():
        taken = {source for _, source in documents if not os.path.isabs(source)}
        paths = sorted((Path(s), i) for i, s in documents if os.path.isabs(s))  # stable order
        outside = [p.parent for p, _ in paths if not inside(p)]
        common = Path(os.path.commonpath(outside)) if outside else None
        for path, document_id in paths:
            base = cwd if inside(path) or common is None else common.parent
            if (name := _unique(path, base, taken)) is not None:
                taken.add(name)
                renamed[document_id] = name
    return renamed


def upgrade() -> None:
    op.add_column(
        "documents",
        sa.Column("origin", sa.String(16), nullable=False, server_default="upload"),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(_documents.c.id, _documents.c.collection_id,
                                  _documents.c.source)).all()  # fmt: skip
    renamed = relative_sources(rows, Path.cwd())
    changes = [
        {"document_id": i, "new_source": renamed.get(i, source)}
        for i, _, source in rows
        if os.path.isabs(source)
    ]
    # New names are relative and unique among the relative ones already there, so no
    # intermediate state breaks UNIQUE (collection_id, source).
    if changes:
        rename = (
            _documents.update()
            .where(_documents.c.id == sa.bindparam("document_id"))
            .values(source=sa.bindparam("new_source"), origin="file")
        )
        bind.execute(rename, changes)


def downgrade() -> None:
    op.drop_column("documents", "origin")
