"""Collections, documents, chunks, and the vector + keyword search tables beside them.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Vectors are 384-d (all-MiniLM-L6-v2, the default embedder); an embedder of another width needs
a migration that recreates `chunk_vectors`.
SQLite: an FTS5 table (external content = chunks, porter stemming) kept in sync by triggers,
and a sqlite-vec vec0 table partitioned by collection. Postgres: a generated tsvector column
with a GIN index, and a pgvector table with an HNSW (cosine) index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatworks.storage.models import JsonDict, RowId

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMBEDDING_DIM = 384

_SQLITE = [
    f"""CREATE VIRTUAL TABLE chunk_vectors USING vec0(
        chunk_id INTEGER PRIMARY KEY,
        collection_id INTEGER PARTITION KEY,
        embedding FLOAT[{EMBEDDING_DIM}] distance_metric=cosine)""",
    """CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, content='chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    # External-content FTS5 stores only the index: every change to chunks must be mirrored.
    """CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    # Fires for ON DELETE CASCADE too, so deleting a document or collection cleans both tables.
    """CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        DELETE FROM chunk_vectors WHERE chunk_id = old.id;
    END""",
    """CREATE TRIGGER chunks_au AFTER UPDATE OF text ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END""",
]

_POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    """ALTER TABLE chunks ADD COLUMN tsv tsvector
        GENERATED ALWAYS AS (to_tsvector('english', text)) STORED""",
    "CREATE INDEX ix_chunks_tsv ON chunks USING gin (tsv)",
    "CREATE INDEX ix_documents_metadata ON documents USING gin (metadata jsonb_path_ops)",
    f"""CREATE TABLE chunk_vectors (
        chunk_id BIGINT PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
        collection_id INTEGER NOT NULL,
        embedding vector({EMBEDDING_DIM}) NOT NULL)""",
    """CREATE INDEX ix_chunk_vectors_embedding ON chunk_vectors
        USING hnsw (embedding vector_cosine_ops)""",
    "CREATE INDEX ix_chunk_vectors_collection ON chunk_vectors (collection_id)",
]


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("title", sa.String(512), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("metadata", JsonDict, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection_id", "source"),
    )
    op.create_table(
        "chunks",
        sa.Column("id", RowId, primary_key=True),
        sa.Column(
            "document_id",
            sa.String(32),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("start_char", sa.Integer, nullable=False),
        sa.Column("end_char", sa.Integer, nullable=False),
        sa.Column("page", sa.Integer),
        sa.Column("section", sa.Text),
        sa.Column("metadata", JsonDict, nullable=False),
    )
    op.create_index("ix_chunks_document_ordinal", "chunks", ["document_id", "ordinal"])
    statements = _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE chunks_fts")
    op.execute("DROP TABLE chunk_vectors")
    op.drop_table("chunks")
    op.drop_table("documents")
    op.drop_table("collections")
