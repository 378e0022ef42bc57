"""The relational schema of documents: collections, documents, chunks.

The search structures that sit next to these tables (a sqlite-vec / pgvector table of chunk
vectors, an FTS5 table / tsvector column for keywords) are dialect-specific, so they are
created by the migration, not declared here. Relationships are deliberately not mapped:
deletes cascade in the database (ON DELETE CASCADE + triggers), never by loading rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on Postgres so metadata filters can use containment (`@>`); JSON text on SQLite.
JsonDict = JSON().with_variant(JSONB(), "postgresql")
# SQLite only aliases the rowid for exactly "INTEGER PRIMARY KEY"; Postgres gets 64 bits.
RowId = BigInteger().with_variant(Integer(), "sqlite")
# The width of `chunk_vectors.embedding` as migration 0001 created it (all-MiniLM-L6-v2).
VECTOR_DIM = 384


def _now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class CollectionRow(Base):
    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection_id", "source"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(1024))  # path or upload name: the identity
    title: Mapped[str] = mapped_column(String(512))
    content_hash: Mapped[str] = mapped_column(String(64))  # of bytes, metadata and ingest settings
    # `metadata` is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonDict, default=dict)
    # "ready" is the only state written today: a document commits together with its chunks.
    # The column lets a future background ingestion show "queued"/"failed" without a migration.
    status: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ChunkRow(Base):
    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_document_ordinal", "document_id", "ordinal"),)

    # An integer key: it is the rowid that the FTS5 and vec0 tables point back to.
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    start_char: Mapped[int] = mapped_column(Integer)
    end_char: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    section: Mapped[str | None] = mapped_column(Text, nullable=True)  # "Install > From source"
    # e.g. {"injection": ["ignore-instructions"]} when the scanner flags the chunk.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonDict, default=dict)
