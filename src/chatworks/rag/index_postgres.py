"""The scale-out index: pgvector (HNSW, cosine) for vectors and Postgres full-text search
(tsvector + GIN, english stemming, `ts_rank` with length normalisation) for keywords.

Filters sit in the WHERE clause of the k-NN query. HNSW alone would take its ef_search nearest
neighbours first and filter afterwards, returning too few (or no) rows when the filter is
selective; pgvector 0.8's iterative scan keeps walking the graph until k rows pass the filter.
"""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import Connection, text

from chatworks.rag.index_sql import Checked, Ranked, SqlIndex

# Candidates HNSW keeps per step; higher = better recall, slower. pgvector caps it at 1000.
_MIN_EF_SEARCH = 100


def _metadata_sql(filters: Checked) -> tuple[str, dict[str, object]]:
    """Containment on the JSONB metadata (alias d): typed equality, served by the GIN index."""
    if not filters:
        return "", {}
    return " AND d.metadata @> CAST(:filters AS jsonb)", {"filters": json.dumps(filters)}


class PostgresIndex(SqlIndex):
    # Sent as pgvector's text form: no adapter to register on connections, which would fail
    # on a fresh database before the migration has created the extension.
    vector_param = "CAST(:embedding AS vector)"

    def encode_vector(self, vector: np.ndarray) -> object:
        return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"

    def _vector_ranked(
        self, conn: Connection, vector: np.ndarray, k: int, collection_id: int, filters: Checked
    ) -> Ranked:
        where, params = _metadata_sql(filters)
        # Transaction-local settings (set_config(..., true)), so pooled connections stay clean.
        ef_search = str(min(1000, max(_MIN_EF_SEARCH, 2 * k)))
        conn.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": ef_search})
        conn.execute(text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))
        # relaxed_order may return neighbours slightly out of order: re-sort the k we keep.
        rows = conn.execute(
            text(
                "WITH nearest AS MATERIALIZED ("
                " SELECT v.chunk_id, v.embedding <=> CAST(:q AS vector) AS distance"
                " FROM chunk_vectors v"
                " JOIN chunks c ON c.id = v.chunk_id JOIN documents d ON d.id = c.document_id"
                f" WHERE v.collection_id = :cid{where}"
                " ORDER BY distance LIMIT :k)"
                " SELECT chunk_id, distance FROM nearest ORDER BY distance"
            ),
            {"q": self.encode_vector(vector), "k": k, "cid": collection_id, **params},
        )
        return [(chunk_id, 1.0 - distance) for chunk_id, distance in rows]

    def _keyword_ranked(
        self, conn: Connection, terms: list[str], k: int, collection_id: int, filters: Checked
    ) -> Ranked:
        where, params = _metadata_sql(filters)
        # Terms are letters/digits only, so "a | b" is always valid to_tsquery syntax.
        rows = conn.execute(
            text(
                "SELECT c.id, ts_rank(c.tsv, q, 1) AS rank"
                " FROM chunks c JOIN documents d ON d.id = c.document_id,"
                " to_tsquery('english', :q) AS q"
                f" WHERE c.tsv @@ q AND d.collection_id = :cid{where}"
                " ORDER BY rank DESC, c.id LIMIT :k"
            ),
            {"q": " | ".join(terms), "k": k, "cid": collection_id, **params},
        )
        return [(chunk_id, float(rank)) for chunk_id, rank in rows]

    def _term_count(self, conn: Connection, word: str, collection_id: int) -> int:
        # plainto_tsquery: a stop word becomes an empty query, which matches nothing (count 0).
        return conn.execute(
            text(
                "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id"
                " WHERE c.tsv @@ plainto_tsquery('english', :w) AND d.collection_id = :cid"
            ),
            {"w": word, "cid": collection_id},
        ).scalar_one()
