"""Bulk loading of prepared documents into Postgres + pgvector: binary COPY, with the HNSW
index built after the load.

Inserting into an HNSW index row by row costs a graph search per row; building it once over
the loaded table is several times faster (pgvector's README says the same). So the load, in one
transaction: read the vector index's definition from the catalog (whatever the migrations made
it), drop it, COPY the chunks and their vectors in binary (psycopg's `copy`, pgvector's binary
dumper), then run the definition again. A failure anywhere rolls all of it back, the index
included. The price: the dropped index's table lock blocks searches of every collection until
the commit, so a bulk load belongs in a quiet window (docs/operations/spark.md).
Documents themselves are few, so they go through `index_sql.upsert_document` (the same
insert-or-replace as a local ingest); the chunk ids come from the chunks' own sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import TypeVar

from psycopg.types.json import Jsonb
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from chatworks.rag.index_sql import upsert_document
from chatworks.rag.ingest import PreparedDocument
from chatworks.rag.types import NewDocument

T = TypeVar("T")
VECTOR_INDEX = "ix_chunk_vectors_embedding"  # migration 0001
_CHUNK_COLUMNS = (
    "id, document_id, ordinal, text, start_char, end_char, page, section, metadata",
    ["int8", "varchar", "int4", "text", "int4", "int4", "int4", "text", "jsonb"],
)
_VECTOR_COLUMNS = ("chunk_id, collection_id, embedding", ["int8", "int4", "vector"])
_DOCUMENTS_PER_COPY = 256  # documents upserted before one COPY of all their chunks


def bulk_load(engine: Engine, documents: Iterable[tuple[NewDocument, PreparedDocument]]) -> int:
    """Store each (document, prepared) like `Index.replace_document` would, in one transaction;
    returns the number of chunks written."""
    from pgvector.psycopg import register_vector

    documents = iter(documents)
    first = next(documents, None)
    if first is None:  # nothing changed: leave the index (and its lock) alone
        return 0
    written = 0
    with engine.begin() as conn:
        raw = conn.connection.driver_connection  # the psycopg connection, in this transaction
        register_vector(raw)
        definition = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": VECTOR_INDEX}
        ).scalar_one_or_none()
        if definition:
            conn.execute(text(f"DROP INDEX {VECTOR_INDEX}"))
        session = Session(bind=conn)
        for group in _groups(chain([first], documents), _DOCUMENTS_PER_COPY):
            written += _load_group(conn, session, group)
        if definition:
            conn.exec_driver_sql(definition)  # as the catalog printed it: no parameters
    return written


def _groups(items: Iterable[T], n: int) -> Iterator[list[T]]:
    it = iter(items)
    while group := list(islice(it, n)):
        yield group


def _load_group(
    conn: Connection, session: Session, group: list[tuple[NewDocument, PreparedDocument]]
) -> int:
    rows = [(upsert_document(session, document), prepared) for document, prepared in group]
    count = sum(len(prepared.passages) for _, prepared in rows)
    if count == 0:
        return 0
    ids = iter(
        conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('chunks', 'id')) FROM generate_series(1, :n)"
            ),
            {"n": count},
        ).scalars()
    )
    chunks, vectors = [], []
    for (row, collection_id), prepared in rows:
        for ordinal, (passage, vector) in enumerate(
            zip(prepared.passages, prepared.vectors, strict=True)
        ):
            chunk_id = next(ids)
            chunks.append((
                chunk_id, row.id, ordinal, passage.text, passage.start, passage.end,
                passage.page, passage.section, Jsonb(dict(passage.metadata)),
            ))  # fmt: skip
            vectors.append((chunk_id, collection_id, vector))
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor:
        for (table, (columns, types)), data in (
            (("chunks", _CHUNK_COLUMNS), chunks),
            (("chunk_vectors", _VECTOR_COLUMNS), vectors),
        ):
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for record in data:
                    copy.write_row(record)
    return count
