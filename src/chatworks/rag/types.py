"""The contracts between the RAG rooms: what a chunk is, what a search returns, and the two
protocols (`Embedder`, `Index`) that have more than one implementation.

Every `Index` implementation (SQLite: sqlite-vec + FTS5; Postgres: pgvector + full-text) must
pass the same contract test-suite, `tests/contracts/test_index_contract.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """A passage of a document, with where it came from.

    `start`/`end` are character offsets into the document's extracted text, so
    `document_text[start:end] == text`; `page` is 1-based for paged formats (PDF), else None;
    `section` is the heading path ("Install > From source"), or None.
    """

    id: str
    document_id: str
    collection: str
    ordinal: int  # position of the chunk within its document
    text: str
    start: int
    end: int
    page: int | None = None
    section: str | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Passage:
    """A chunk before it is stored: what the chunker produces and `Index.replace_document` takes.
    Offsets, page and section mean the same as in `Chunk`; the ordinal is the list position."""

    text: str
    start: int
    end: int
    page: int | None = None
    section: str | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One search result: the chunk, the score the search gave it (higher is better), and the
    document's title and source, so answers can cite without another query."""

    chunk: Chunk
    score: float
    title: str = ""
    source: str = ""


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32, L2-normalised (so dot product == cosine similarity)."""


@dataclass(frozen=True)
class NewDocument:
    """What `Index.replace_document` stores about a document besides its chunks. `source`
    (a relative path or an upload's name) identifies the document within its collection;
    `origin` is "file" for a document ingested from disk (which `--prune` may delete)."""

    collection: str
    source: str
    title: str
    content_hash: str
    metadata: Mapping[str, object] = field(default_factory=dict)
    origin: Literal["file", "upload"] = "upload"


@runtime_checkable
class Index(Protocol):
    """Vectors and keywords for chunks, filtered inside the query (never after top-k).

    `filters` are equality tests on document metadata ({"lang": "en"}), ANDed together.
    An index also owns writes, because a document, its chunks, their vectors and their
    full-text rows must commit in one transaction."""

    dim: int

    def replace_document(
        self, document: NewDocument, passages: Sequence[Passage], vectors: np.ndarray
    ) -> str:
        """Insert the document, or replace the one with the same collection and source, with
        its passages and their [len(passages), dim] vectors, atomically. Returns its id."""

    def delete_document(self, document_id: str) -> bool:
        """Remove a document with its chunks, vectors and full-text rows; False if unknown."""

    def vector_search(
        self,
        vector: np.ndarray,
        k: int,
        collection: str,
        filters: Mapping[str, object] | None = None,
    ) -> list[Hit]:
        """Top-k chunks by cosine similarity (score in [-1, 1]), best first."""

    def keyword_search(
        self,
        query: str,
        k: int,
        collection: str,
        filters: Mapping[str, object] | None = None,
    ) -> list[Hit]:
        """Top-k chunks by BM25 / full-text rank (higher is better), best first. Query text is
        user input: it must never be able to break the query syntax."""

    def term_counts(self, terms: Sequence[str], collection: str) -> tuple[int, dict[str, int]]:
        """(chunks in the collection, chunks whose full text matches each term), with the same
        word matching (stemming) as `keyword_search`: the statistics behind an IDF."""
