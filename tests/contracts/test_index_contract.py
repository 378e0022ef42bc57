"""The `Index` contract: every implementation (SQLite: sqlite-vec + FTS5; Postgres: pgvector +
full-text) must pass this same suite. Vectors are synthetic so the expected ranking is exact;
the stores, SQL and extensions are the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chatworks.rag.index_sql import open_index
from chatworks.rag.types import Index, NewDocument, Passage
from chatworks.storage import create_engine, upgrade

DIM = 384


@pytest.fixture(params=["sqlite", "postgres"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Index]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    upgrade(engine)
    idx = open_index(engine)
    assert isinstance(idx, Index)
    yield idx
    engine.dispose()


def unit(*pairs: tuple[int, float]) -> np.ndarray:
    """A unit vector with the given (axis, weight) components."""
    v = np.zeros(DIM, dtype=np.float32)
    for axis, weight in pairs:
        v[axis] = weight
    return v / np.linalg.norm(v)


def add(
    index: Index,
    texts: list[str],
    vectors: list[np.ndarray] | None = None,
    *,
    collection: str = "c",
    source: str = "doc.txt",
    metadata: dict | None = None,
    chunk_metadata: dict | None = None,
) -> str:
    passages, offset = [], 0
    for text in texts:
        passages.append(
            Passage(
                text, offset, offset + len(text), page=1, section="S", metadata=chunk_metadata or {}
            )
        )
        offset += len(text) + 2
    if vectors is None:  # distinct, arbitrary directions
        vectors = [unit((i % DIM, 1.0), ((i + 7) % DIM, 0.5)) for i in range(len(texts))]
    document = NewDocument(collection, source, f"Title of {source}", "hash", metadata or {})
    return index.replace_document(document, passages, np.stack(vectors))


def test_vector_search_orders_by_cosine_similarity(index: Index) -> None:
    angles = [0.0, 0.3, 0.6, 0.9, 1.2]
    vectors = [unit((0, np.cos(a)), (1, np.sin(a))) for a in angles]
    add(index, [f"passage {i}" for i in range(5)], [vectors[i] for i in (3, 0, 4, 1, 2)])
    hits = index.vector_search(unit((0, 1.0)), 3, "c")
    assert [h.chunk.text for h in hits] == ["passage 1", "passage 3", "passage 4"]
    assert [h.score for h in hits] == pytest.approx(np.cos(angles[:3]), abs=1e-4)
    assert hits[0].title == "Title of doc.txt" and hits[0].source == "doc.txt"
    assert (hits[0].chunk.page, hits[0].chunk.section, hits[0].chunk.ordinal) == (1, "S", 1)


def test_keyword_search_ranks_by_relevance(index: Index) -> None:
    add(
        index,
        [
            "Vectors are stored in sqlite-vec.",
            "Keyword search uses BM25 over sqlite full-text tables.",
            "The weather is nice today.",
        ],
    )
    hits = index.keyword_search("sqlite tables", 10, "c")
    assert [h.chunk.ordinal for h in hits][:2] == [1, 0]
    assert all(h.chunk.ordinal != 2 for h in hits)
    assert hits[0].score > hits[1].score
    # Stemming: "table" finds "tables".
    assert [h.chunk.ordinal for h in index.keyword_search("table", 10, "c")] == [1]


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced install',
        "install AND NOT",
        "install*",
        "NEAR(install guide)",
        "text:install",
        "(((install",
        "install'; DROP TABLE chunks; --",
        "-install",
        "^install",
        "install | guide & !x",
        "install <-> guide",
        "install:*",
        "{install}",
        "install OR",
        "INSTALL!!!",
        "in.stall/install\\",
        "'install'",
    ],
)
def test_keyword_search_treats_query_syntax_as_plain_words(index: Index, query: str) -> None:
    add(index, ["How to install the package.", "Something unrelated."])
    hits = index.keyword_search(query, 5, "c")
    assert [h.chunk.ordinal for h in hits] == [0]


@pytest.mark.parametrize("query", ["", "   ", '""', "*", "AND OR NOT", "!!! ??? ...", "'"])
def test_keyword_search_with_nothing_to_match_returns_nothing(index: Index, query: str) -> None:
    add(index, ["AND OR NOT are just words here."])
    hits = index.keyword_search(query, 5, "c")
    assert all(h.chunk.text for h in hits)  # may match the words "and or not", must not raise


def test_collections_are_isolated(index: Index) -> None:
    v = unit((5, 1.0))
    add(index, ["shared words in alpha"], [v], collection="alpha")
    add(index, ["shared words in beta"], [v], collection="beta")
    assert [h.chunk.collection for h in index.vector_search(v, 10, "alpha")] == ["alpha"]
    assert [h.chunk.text for h in index.keyword_search("shared", 10, "beta")] == [
        "shared words in beta"
    ]
    assert index.vector_search(v, 10, "missing") == []
    assert index.keyword_search("shared", 10, "missing") == []


def test_metadata_filters_apply_before_top_k(index: Index) -> None:
    query = unit((0, 1.0))
    # 60 English chunks closer to the query than the one French chunk, which ranks 61st.
    english = [unit((0, 1.0 - 0.005 * i), (i + 1, 0.2)) for i in range(60)]
    add(
        index,
        [f"english apple {i} apple apple" for i in range(60)],
        english,
        source="en.txt",
        metadata={"lang": "en", "public": True},
    )
    add(
        index,
        ["french apple"],
        [unit((0, 0.3), (100, 1.0))],
        source="fr.txt",
        metadata={"lang": "fr", "public": False},
    )

    assert "french apple" not in [h.chunk.text for h in index.vector_search(query, 50, "c")]
    for filters in ({"lang": "fr"}, {"public": False}, {"lang": "fr", "public": False}):
        assert [h.chunk.text for h in index.vector_search(query, 5, "c", filters)] == [
            "french apple"
        ]
        assert [h.chunk.text for h in index.keyword_search("apple", 5, "c", filters)] == [
            "french apple"
        ]
    english_hits = index.vector_search(query, 5, "c", {"lang": "en", "public": True})
    assert [h.chunk.text for h in english_hits] == [
        f"english apple {i} apple apple" for i in range(5)
    ]
    assert index.vector_search(query, 5, "c", {"lang": "de"}) == []
    assert index.keyword_search("apple", 5, "c", {"lang": "en", "public": False}) == []


def test_invalid_filters_are_rejected(index: Index) -> None:
    add(index, ["text"])
    with pytest.raises(ValueError):
        index.vector_search(unit((0, 1.0)), 5, "c", {"bad'key": "x"})
    with pytest.raises(ValueError):
        index.keyword_search("text", 5, "c", {"key": ["a", "list"]})


def test_replace_document_swaps_its_chunks(index: Index) -> None:
    first = add(index, ["old wording here", "more old wording"])
    second = add(index, ["new phrasing"], chunk_metadata={"injection": ["ignore-instructions"]})
    assert first == second  # same collection + source: the same document, replaced
    assert index.keyword_search("wording", 10, "c") == []
    hits = index.keyword_search("phrasing", 10, "c")
    assert [h.chunk.text for h in hits] == ["new phrasing"]
    assert hits[0].chunk.metadata == {"injection": ["ignore-instructions"]}
    assert len(index.vector_search(unit((0, 1.0)), 10, "c")) == 1


def test_delete_document_removes_it_from_both_searches(index: Index) -> None:
    keep = add(index, ["keep this apple"], [unit((0, 1.0))], source="keep.txt")
    gone = add(index, ["drop this apple"], [unit((0, 1.0), (1, 0.1))], source="gone.txt")
    assert index.delete_document(gone) is True
    assert index.delete_document(gone) is False
    assert [h.chunk.document_id for h in index.vector_search(unit((0, 1.0)), 10, "c")] == [keep]
    assert [h.chunk.document_id for h in index.keyword_search("apple", 10, "c")] == [keep]


def test_vectors_must_match_passages(index: Index) -> None:
    with pytest.raises(ValueError):
        index.replace_document(
            NewDocument("c", "x.txt", "x", "h"), [Passage("a", 0, 1)], np.zeros((2, DIM))
        )


def test_term_counts_are_per_collection_and_stemmed(index: Index) -> None:
    add(index, ["the tables of sqlite", "one table here", "nothing else"])
    add(index, ["tables everywhere"], collection="other")
    total, counts = index.term_counts(["table", "sqlite", "zebra"], "c")
    assert total == 3
    assert counts == {"table": 2, "sqlite": 1, "zebra": 0}
    assert index.term_counts(["table"], "missing") == (0, {"table": 0})
