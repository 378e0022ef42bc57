"""Collections and documents as the API and CLI see them: create, list, look up, delete.

Plain functions over a Session, returning frozen dataclasses detached from it. Writing a
document with its chunks and vectors is `Index.replace_document` (the index owns the vectors).

Tenancy: every lookup takes `owner`, and `None` means any owner (admins, the CLI). The owner
is a condition of the query itself, so another tenant's rows are never loaded, only absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, delete, func, select, true
from sqlalchemy.orm import Session

from chatworks.storage.models import DEFAULT_OWNER, ChunkRow, CollectionRow, DocumentRow


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    documents: int
    created_at: datetime
    owner: str = DEFAULT_OWNER


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    collection: str
    source: str
    title: str
    content_hash: str
    metadata: Mapping[str, object]
    status: str
    chunks: int
    created_at: datetime
    updated_at: datetime
    origin: str = "upload"  # or "file": ingested from disk, so `--prune` may delete it


def _owned(owner: str | None) -> ColumnElement[bool]:
    return CollectionRow.owner == owner if owner is not None else true()


def get_or_create_collection(
    session: Session, name: str, owner: str = DEFAULT_OWNER
) -> CollectionRow:
    """The collection `name`, created for `owner` if missing. Names are unique across owners:
    the caller checks `row.owner` before using a collection it did not just create."""
    row = session.scalar(select(CollectionRow).where(CollectionRow.name == name))
    if row is None:
        row = CollectionRow(name=name, owner=owner)
        session.add(row)
        session.flush()
    return row


def collection_id(session: Session, name: str, owner: str | None = None) -> int | None:
    query = select(CollectionRow.id).where(CollectionRow.name == name, _owned(owner))
    return session.scalar(query)


def collection_version(session: Session, name: str, owner: str | None = None) -> str | None:
    """A version of the collection `name` that changes whenever its documents do (None if
    `owner` has no such collection): what the response cache keys grounded answers on.

    Derived, not stored, so every writer (API, CLI, another replica) moves it without a
    migration. Within one collection's history it names exactly one set of documents: a
    document enters (added or replaced) with an `updated_at` later than every other, so a
    later state with the same newest time has had every later arrival deleted again, is a
    subset of the earlier one, and with the same count is the same set (so going back to an
    earlier set, e.g. deleting what was just added, rightly finds that set's entries). A
    collection deleted and created again under its name has a new `created_at`, even when
    SQLite reuses its id. An unchanged re-ingest leaves it as it is.
    """
    query = (
        select(CollectionRow.id, CollectionRow.created_at, func.count(DocumentRow.id),
               func.max(DocumentRow.updated_at))
        .outerjoin(DocumentRow, DocumentRow.collection_id == CollectionRow.id)
        .where(CollectionRow.name == name, _owned(owner))
        .group_by(CollectionRow.id, CollectionRow.created_at)
    )  # fmt: skip
    row = session.execute(query).first()
    if row is None:
        return None
    cid, created, count, newest = row
    return f"{cid}:{created.isoformat()}:{count}:{newest.isoformat() if newest else '-'}"


def list_collections(session: Session, owner: str | None = None) -> list[CollectionInfo]:
    counts = (
        select(CollectionRow.name, CollectionRow.created_at, CollectionRow.owner,
               func.count(DocumentRow.id))
        .outerjoin(DocumentRow, DocumentRow.collection_id == CollectionRow.id)
        .where(_owned(owner))
        .group_by(CollectionRow.id)
        .order_by(CollectionRow.name)
    )  # fmt: skip
    rows = session.execute(counts)
    return [CollectionInfo(name, n, created, who) for name, created, who, n in rows]


def delete_collection(session: Session, name: str, owner: str | None = None) -> bool:
    """Delete a collection and, by cascade, its documents, chunks and index rows."""
    query = delete(CollectionRow).where(CollectionRow.name == name, _owned(owner))
    return session.execute(query).rowcount > 0


def _documents_query() -> Select[tuple[DocumentRow, str, int]]:
    # Counted per selected document (an index search), not grouped over every chunk stored.
    chunks = (
        select(func.count())
        .where(ChunkRow.document_id == DocumentRow.id)
        .correlate(DocumentRow)
        .scalar_subquery()
    )
    return select(DocumentRow, CollectionRow.name, chunks).join(
        CollectionRow, CollectionRow.id == DocumentRow.collection_id
    )


def _info(row: DocumentRow, collection: str, chunks: int) -> DocumentInfo:
    return DocumentInfo(
        id=row.id,
        collection=collection,
        source=row.source,
        title=row.title,
        content_hash=row.content_hash,
        metadata=dict(row.meta),
        status=row.status,
        chunks=chunks,
        created_at=row.created_at,
        updated_at=row.updated_at,
        origin=row.origin,
    )


def list_documents(
    session: Session, collection: str, owner: str | None = None
) -> list[DocumentInfo]:
    query = _documents_query().where(CollectionRow.name == collection, _owned(owner))
    return [_info(*row) for row in session.execute(query.order_by(DocumentRow.source))]


def get_document(
    session: Session, document_id: str, owner: str | None = None
) -> DocumentInfo | None:
    query = _documents_query().where(DocumentRow.id == document_id, _owned(owner))
    row = session.execute(query).first()
    return _info(*row) if row else None


def find_document(session: Session, collection: str, source: str) -> DocumentInfo | None:
    query = _documents_query().where(CollectionRow.name == collection, DocumentRow.source == source)
    row = session.execute(query).first()
    return _info(*row) if row else None


def delete_document(session: Session, document_id: str, owner: str | None = None) -> bool:
    """Delete a document and, by cascade, its chunks and index rows."""
    owned = select(CollectionRow.id).where(_owned(owner))
    query = delete(DocumentRow).where(
        DocumentRow.id == document_id, DocumentRow.collection_id.in_(owned)
    )
    return session.execute(query).rowcount > 0


@dataclass(frozen=True)
class Section:
    source: str
    title: str
    section: str  # the heading path, "Guide > Install"


def list_sections(session: Session, collection: str, owner: str | None = None) -> list[Section]:
    """Every distinct heading path of a collection's documents, in document (by source) and
    reading order."""
    query = (
        select(DocumentRow.source, DocumentRow.title, ChunkRow.section)
        .join(ChunkRow, ChunkRow.document_id == DocumentRow.id)
        .join(CollectionRow, CollectionRow.id == DocumentRow.collection_id)
        .where(CollectionRow.name == collection, _owned(owner), ChunkRow.section.is_not(None))
        .group_by(DocumentRow.source, DocumentRow.title, ChunkRow.section)
        .order_by(DocumentRow.source, func.min(ChunkRow.ordinal))
    )
    return [Section(*row) for row in session.execute(query)]
