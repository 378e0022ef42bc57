"""The relational schema: collections, documents, chunks; API keys, their usage, the audit log;
agents' registered MCP servers, stored responses and tool approvals.

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
# Who owns what when auth is off (and everything stored before keys existed).
DEFAULT_OWNER = "default"
# The width of `chunk_vectors.embedding` as migration 0001 created it (all-MiniLM-L6-v2).
VECTOR_DIM = 384


def _now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes from timezone-aware columns; they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class CollectionRow(Base):
    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The tenant: a key's owner (docs/security/). Names stay globally unique, see migration 0002.
    owner: Mapped[str] = mapped_column(String(64), default=DEFAULT_OWNER, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection_id", "source"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    # The identity: a path relative to where it was ingested (`rag/sources.py`) or an upload's
    # name. Never an absolute path: citations show it to clients (migration 0004).
    source: Mapped[str] = mapped_column(String(1024))
    # "file" (ingested from disk: `--prune` may delete it) or "upload" (never pruned).
    origin: Mapped[str] = mapped_column(String(16), default="upload")
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


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 of the secret: a stolen database gives no usable key (the secret has 256 random
    # bits, so a slow password hash would add nothing).
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the secret's start: tells keys apart
    owner: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: every model
    collections: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # "server:tool" patterns ("notes:*", "files:read_*") the key's agents may call (None: any
    # registered tool), and the write tools among them that run without a person's approval.
    tools: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    auto_approve: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # {"rpm", "tpm", "max_parallel", "budget_tokens", "budget_period", "models": {id: {...}}}
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class KeyUsageRow(Base):
    """Tokens a key used per budget period ("2026-12-02" or "2026-12"), shared by replicas."""

    __tablename__ = "key_usage"

    key_id: Mapped[str] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditRow(Base):
    """Append-only (triggers in migration 0002 refuse UPDATE and DELETE)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # key id, "bootstrap-admin", "cli", "anonymous"
    action: Mapped[str] = mapped_column(String(64))  # "key.create", "document.delete", ...
    resource: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # "ok", "denied", "not_found", "failed"
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)  # address it came from
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The Responses API run a tool call belongs to (`GET /v1/audit?response_id=`).
    response_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class UsageDailyRow(Base):
    """Requests and tokens per key, model and UTC day (`GET /v1/usage`, `chatworks usage`).

    Not a foreign key: "anonymous" (auth off) and the bootstrap admin are counted too, and a
    key's history stays when the key goes."""

    __tablename__ = "usage_daily"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True, index=True)  # "2026-12-02"
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class McpServerRow(Base):
    """An MCP server an admin registered: agents call only these (no URL from a request)."""

    __tablename__ = "mcp_servers"

    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    transport: Mapped[str] = mapped_column(String(16))  # "stdio" | "http"
    target: Mapped[str] = mapped_column(Text)  # the command line, or the URL
    # Tools the admin marks as writes whatever their annotations say.
    write_tools: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ResponseRow(Base):
    """A Responses API result, kept for `previous_response_id` and `GET /v1/responses/{id}`."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(64))
    previous_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the response object as returned
    # What continuing it needs: the conversation so far, the tools and the run's state.
    state: Mapped[dict[str, Any]] = mapped_column(JSON)


class ApprovalRow(Base):
    """A tool call waiting for a person, and what came of it. `status` moves once, from
    pending to approved, denied or expired (a conditional UPDATE): an approved call runs once
    however often the approval is sent again, and its `result` is what every resume reuses."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    response_id: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(64))
    server: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(200))
    arguments: Mapped[str] = mapped_column(Text)  # JSON text, as the model wrote it
    status: Mapped[str] = mapped_column(String(16))  # pending|approved|denied|expired
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # once it ran
