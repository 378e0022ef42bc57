"""The embedded index: sqlite-vec (vec0, cosine, partitioned by collection) for vectors and
FTS5 (BM25, porter stemming) for keywords, in the same SQLite file as the documents.

sqlite-vec searches exactly (no approximate index), which stays fast to ~100k chunks per
collection; past that, use Postgres. Metadata filters become a `chunk_id IN (...)` constraint
that vec0 applies while it scans, so top-k is taken among matching chunks only.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, text

from chatworks.rag.index_sql import Checked, Ranked, SqlIndex


def _metadata_sql(filters: Checked) -> tuple[str, dict[str, object]]:
    """AND-ed equality tests on documents.metadata (alias d); keys are pre-checked."""
    clauses, params = [], {}
    for i, (key, value) in enumerate(filters.items()):
        path = f"'$.\"{key}\"'"
        if isinstance(value, bool):  # JSON true/false read back as 1/0: compare the type
            clauses.append(f"json_type(d.metadata, {path}) = '{'true' if value else 'false'}'")
        else:
            clauses.append(f"json_extract(d.metadata, {path}) = :f{i}")
            params[f"f{i}"] = value
    return "".join(f" AND {c}" for c in clauses), params


class SqliteIndex(SqlIndex):
    def encode_vector(self, vector: np.ndarray) -> object:
        return np.asarray(vector, dtype=np.float32).tobytes()

    def _vector_ranked(
        self, conn: Connection, vector: np.ndarray, k: int, collection_id: int, filters: Checked
    ) -> Ranked:
        where, params = _metadata_sql(filters)
        prefilter = (
            " AND v.chunk_id IN (SELECT c.id FROM chunks c"
            " JOIN documents d ON d.id = c.document_id"
            f" WHERE d.collection_id = :cid{where})"
            if filters
            else ""
        )
        rows = conn.execute(
            text(
                "SELECT v.chunk_id, v.distance FROM chunk_vectors v"
                " WHERE v.embedding MATCH :q AND k = :k AND v.collection_id = :cid"
                f"{prefilter} ORDER BY v.distance"
            ),
            {"q": self.encode_vector(vector), "k": k, "cid": collection_id, **params},
        )
        return [(chunk_id, 1.0 - distance) for chunk_id, distance in rows]

    def _keyword_ranked(
        self, conn: Connection, terms: list[str], k: int, collection_id: int, filters: Checked
    ) -> Ranked:
        where, params = _metadata_sql(filters)
        # Every term is letters/digits only and double-quoted, so FTS5 reads it as a plain
        # string: AND/OR/NOT/NEAR, *, ^ and column filters in user text mean nothing.
        match = " OR ".join(f'"{term}"' for term in terms)
        # The MATCH runs once, materialized, before the join: joined directly, SQLite's planner
        # drove the join from the collection's chunks and re-ran the full-text query per chunk
        # (~60x slower at 1k chunks, growing with the collection).
        rows = conn.execute(
            text(
                "WITH m AS MATERIALIZED (SELECT rowid, bm25(chunks_fts) AS rank"
                " FROM chunks_fts WHERE chunks_fts MATCH :match)"
                " SELECT m.rowid, m.rank FROM m"
                " JOIN chunks c ON c.id = m.rowid JOIN documents d ON d.id = c.document_id"
                f" WHERE d.collection_id = :cid{where}"
                " ORDER BY m.rank LIMIT :k"
            ),
            {"match": match, "k": k, "cid": collection_id, **params},
        )
        return [(chunk_id, -rank) for chunk_id, rank in rows]  # bm25(): lower is better

    def _term_count(self, conn: Connection, word: str, collection_id: int) -> int:
        return conn.execute(
            text(
                "WITH m AS MATERIALIZED (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :w)"
                " SELECT count(*) FROM m JOIN chunks c ON c.id = m.rowid"
                " JOIN documents d ON d.id = c.document_id WHERE d.collection_id = :cid"
            ),
            {"w": f'"{word}"', "cid": collection_id},
        ).scalar_one()
