"""Collections and documents as the API and CLI see them: create, list, look up, delete.

Plain functions over a Session, returning frozen dataclasses detached from it. Writing a
document with its chunks and vectors is `Index.replace_document` (the index owns the vectors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from chatworks.storage.models import ChunkRow, CollectionRow, DocumentRow


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    documents: int
    created_at: datetime


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


def get_or_create_collection(session: Session, name: str) -> CollectionRow:
    row = session.scalar(select(CollectionRow).where(CollectionRow.name == name))
    if row is None:
        row = CollectionRow(name=name)
        session.add(row)
        session.flush()
    return row


def collection_id(session: Session, name: str) -> int | None:
    return session.scalar(select(CollectionRow.id).where(CollectionRow.name == name))


def list_collections(session: Session) -> list[CollectionInfo]:
    counts = (
        select(CollectionRow.name, CollectionRow.created_at, func.count(DocumentRow.id))
        .outerjoin(DocumentRow, DocumentRow.collection_id == CollectionRow.id)
        .group_by(CollectionRow.id)
        .order_by(CollectionRow.name)
    )
    return [CollectionInfo(name, n, created) for name, created, n in session.execute(counts)]


def delete_collection(session: Session, name: str) -> bool:
    """Delete a collection and, by cascade, its documents, chunks and index rows."""
    return session.execute(delete(CollectionRow).where(CollectionRow.name == name)).rowcount > 0


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
    )


def list_documents(session: Session, collection: str) -> list[DocumentInfo]:
    query = _documents_query().where(CollectionRow.name == collection).order_by(DocumentRow.source)
    return [_info(*row) for row in session.execute(query)]


def get_document(session: Session, document_id: str) -> DocumentInfo | None:
    row = session.execute(_documents_query().where(DocumentRow.id == document_id)).first()
    return _info(*row) if row else None


def find_document(session: Session, collection: str, source: str) -> DocumentInfo | None:
    query = _documents_query().where(CollectionRow.name == collection, DocumentRow.source == source)
    row = session.execute(query).first()
    return _info(*row) if row else None


def delete_document(session: Session, document_id: str) -> bool:
    """Delete a document and, by cascade, its chunks and index rows."""
    return session.execute(delete(DocumentRow).where(DocumentRow.id == document_id)).rowcount > 0
