"""What the SQLite and Postgres indexes share: writes, deletes, filter checking, query-term
extraction and turning ranked chunk ids into `Hit`s. Each dialect supplies only its ranking SQL
(`_vector_ranked`, `_keyword_ranked`), its term statistics (`_term_count`), its metadata-filter
SQL and its vector encoding.

Search is two steps in one connection: the dialect query ranks chunk ids with the collection
and metadata filters inside it (so filtering happens before top-k), then one shared query loads
those chunks with their document's title and source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, delete, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from chatworks.rag.types import Chunk, Hit, NewDocument, Passage
from chatworks.storage import documents
from chatworks.storage.db import write_transaction
from chatworks.storage.models import VECTOR_DIM, ChunkRow, DocumentRow

Filters = Mapping[str, object] | None
Checked = dict[str, str | int | float | bool]  # filters after `check_filters`
Ranked = list[tuple[int, float]]  # (chunk id, score: higher is better), best first
RankFn = Callable[[Connection, int, Checked], Ranked]  # (connection, collection id, filters)

_FILTER_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_MAX_TERMS = 64


def check_filters(filters: Filters) -> Checked:
    """Filters as a dict of metadata key -> scalar; ValueError for anything else. Keys are
    restricted so they can be placed in a JSON path without escaping."""
    checked: Checked = {}
    for key, value in (filters or {}).items():
        if not _FILTER_KEY.fullmatch(key):
            raise ValueError(f"invalid metadata filter key {key!r}")
        if not isinstance(value, str | int | float | bool):
            raise ValueError(f"metadata filter {key!r} must be a string, number or boolean")
        checked[key] = value
    return checked


def query_terms(query: str) -> list[str]:
    """The words of a user query (letters and digits only, lower-cased, deduplicated).

    Operators, quotes and punctuation are dropped, not escaped: a keyword query is a bag of
    words ORed together and ranked by BM25, so users cannot (and need not) write FTS syntax."""
    terms = dict.fromkeys(re.findall(r"[^\W_]+", query.lower()))
    return list(terms)[:_MAX_TERMS]


def upsert_document(session: Session, document: NewDocument) -> tuple[DocumentRow, int]:
    """The row of (collection, source) with `document`'s fields, new or emptied of its old
    chunks (their vectors and FTS rows go with them), flushed; and its collection's id. The
    caller adds the chunks in the same transaction (`replace_document`, `spark/load.py`)."""
    collection = documents.get_or_create_collection(session, document.collection)
    row = session.scalar(
        select(DocumentRow).where(
            DocumentRow.collection_id == collection.id, DocumentRow.source == document.source
        )
    )
    if row is None:
        row = DocumentRow(collection_id=collection.id, source=document.source)
        session.add(row)
    else:  # a changed file: its old chunks go, with their vectors and FTS rows
        session.execute(delete(ChunkRow).where(ChunkRow.document_id == row.id))
    row.title = document.title
    row.content_hash = document.content_hash
    row.meta = dict(document.metadata)
    row.origin = document.origin
    row.status = "ready"
    row.updated_at = datetime.now(UTC)
    session.flush()
    return row, collection.id


class SqlIndex:
    """Base of the two SQL indexes; not used directly (see `open_index`)."""

    # How a vector parameter appears in SQL, e.g. "CAST(:embedding AS vector)".
    vector_param = ":embedding"

    def __init__(self, engine: Engine, owner: str | None = None) -> None:
        self.engine = engine
        self.dim = VECTOR_DIM
        self.owner = owner  # searches see only this owner's collections; None: every owner

    def for_owner(self, owner: str | None) -> SqlIndex:
        """The same index, searching only `owner`'s collections (tenant isolation)."""
        return type(self)(self.engine, owner)

    # -- dialect hooks -------------------------------------------------------------------------

    def encode_vector(self, vector: np.ndarray) -> object:
        raise NotImplementedError

    def _vector_ranked(
        self, conn: Connection, vector: np.ndarray, k: int, collection_id: int, filters: Checked
    ) -> Ranked:
        raise NotImplementedError

    def _keyword_ranked(
        self, conn: Connection, terms: list[str], k: int, collection_id: int, filters: Checked
    ) -> Ranked:
        raise NotImplementedError

    def _term_count(self, conn: Connection, word: str, collection_id: int) -> int:
        raise NotImplementedError

    # -- writes ---------------------------------------------------------------------------------

    def replace_document(
        self, document: NewDocument, passages: Sequence[Passage], vectors: np.ndarray
    ) -> str:
        """Insert or replace (same collection + source) a document with its chunks and vectors
        in one transaction; full-text rows follow the chunks (triggers / generated column)."""
        if vectors.shape != (len(passages), self.dim):
            raise ValueError(f"vectors {vectors.shape} do not match {len(passages)}x{self.dim}")
        with write_transaction(self.engine) as session:
            row, collection_id = upsert_document(session, document)
            if passages:
                chunk_ids = session.scalars(
                    insert(ChunkRow).returning(ChunkRow.id, sort_by_parameter_order=True),
                    [
                        {
                            "document_id": row.id,
                            "ordinal": i,
                            "text": p.text,
                            "start_char": p.start,
                            "end_char": p.end,
                            "page": p.page,
                            "section": p.section,
                            "meta": dict(p.metadata),
                        }
                        for i, p in enumerate(passages)
                    ],
                ).all()
                session.connection().execute(
                    text(
                        "INSERT INTO chunk_vectors (chunk_id, collection_id, embedding) "
                        f"VALUES (:chunk_id, :collection_id, {self.vector_param})"
                    ),
                    [
                        {
                            "chunk_id": chunk_id,
                            "collection_id": collection_id,
                            "embedding": self.encode_vector(v),
                        }
                        for chunk_id, v in zip(chunk_ids, vectors, strict=True)
                    ],
                )
            return row.id

    def delete_document(self, document_id: str) -> bool:
        with Session(self.engine) as session, session.begin():
            return documents.delete_document(session, document_id)

    # -- search ---------------------------------------------------------------------------------

    def vector_search(
        self, vector: np.ndarray, k: int, collection: str, filters: Filters = None
    ) -> list[Hit]:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise ValueError(f"query vector has {vector.shape[0]} dimensions, index has {self.dim}")
        return self._search(
            lambda conn, cid, f: self._vector_ranked(conn, vector, k, cid, f),
            k,
            collection,
            filters,
        )

    def keyword_search(
        self, query: str, k: int, collection: str, filters: Filters = None
    ) -> list[Hit]:
        terms = query_terms(query)
        if not terms:
            return []
        return self._search(
            lambda conn, cid, f: self._keyword_ranked(conn, terms, k, cid, f),
            k,
            collection,
            filters,
        )

    def term_counts(self, terms: Sequence[str], collection: str) -> tuple[int, dict[str, int]]:
        words = [t for term in terms for t in query_terms(term)[:1]]  # one plain word each
        with Session(self.engine) as session:
            cid = documents.collection_id(session, collection, self.owner)
            if cid is None:
                return 0, dict.fromkeys(words, 0)
            conn = session.connection()
            total = conn.execute(
                text("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id"
                     " WHERE d.collection_id = :cid"), {"cid": cid},
            ).scalar_one()  # fmt: skip
            return total, {word: self._term_count(conn, word, cid) for word in words}

    def _search(self, rank: RankFn, k: int, collection: str, filters: Filters) -> list[Hit]:
        checked = check_filters(filters)
        if k <= 0:
            return []
        with Session(self.engine) as session:
            cid = documents.collection_id(session, collection, self.owner)
            if cid is None:
                return []
            ranked: Ranked = rank(session.connection(), cid, checked)
            return self._hits(session, ranked, collection)

    @staticmethod
    def _hits(session: Session, ranked: Ranked, collection: str) -> list[Hit]:
        ids = [chunk_id for chunk_id, _ in ranked]
        rows = session.execute(
            select(ChunkRow, DocumentRow.title, DocumentRow.source)
            .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
            .where(ChunkRow.id.in_(ids))
        ).all()
        by_id = {row[0].id: row for row in rows}
        hits = []
        for chunk_id, score in ranked:
            if chunk_id not in by_id:  # deleted between the two queries: skip, never fail
                continue
            c, title, source = by_id[chunk_id]
            chunk = Chunk(
                id=str(c.id),
                document_id=c.document_id,
                collection=collection,
                ordinal=c.ordinal,
                text=c.text,
                start=c.start_char,
                end=c.end_char,
                page=c.page,
                section=c.section,
                metadata=dict(c.meta),
            )
            hits.append(Hit(chunk=chunk, score=float(score), title=title, source=source))
        return hits


def open_index(engine: Engine) -> SqlIndex:
    """The index for `engine`'s dialect, on a database migrated by `storage.open_database`."""
    if engine.dialect.name == "postgresql":
        from chatworks.rag.index_postgres import PostgresIndex

        return PostgresIndex(engine)
    from chatworks.rag.index_sqlite import SqliteIndex

    return SqliteIndex(engine)
