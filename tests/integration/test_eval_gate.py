"""The eval gate: the bundled Python-docs dev set against a fresh ingestion of its 28 pages
(Debian python3.11-doc, installed by scripts/system-deps.sh), with the real MiniLM embedder,
the SQLite index and the default native model.

Thresholds sit a little below what was measured when they were set (docs/evals.md has the
numbers), so a change that makes retrieval or grounding worse fails `make test`. The in-domain
unanswerable questions (asyncio, the GIL, ...) are above the relevance floor, so only the five
out-of-domain ones are refused by retrieval; the gate holds that line and the model is not
asked to do better than it does (SmolLM2-135M answers nearly everything it is given).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from chatworks.evals.datasets import (
    PYTHON_DOCS_DEV,
    PYTHON_DOCS_ROOT,
    EvalItem,
    corpus_files,
    load_dataset,
    normalize,
    passage_matches,
)
from chatworks.evals.report import check_thresholds, write_reports
from chatworks.evals.runner import run_answer_eval, run_retrieval_eval
from chatworks.providers.registry import create_provider
from chatworks.rag.answer import REFUSAL
from chatworks.rag.ingest import ingest_path
from chatworks.rag.library import Library
from chatworks.settings import Settings
from tests.servers import ARTIFACTS

# Ingestion alone takes 1-2 minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(600)

COLLECTION = "python-docs-dev"
RETRIEVAL_MINIMUMS = {
    "recall@10": 0.85,  # measured 0.894 (hybrid)
    "mrr": 0.60,  # measured 0.664
    "ndcg@10": 0.65,  # measured 0.719
    "floor_refusal_accuracy": 0.40,  # measured 0.417: the 5 out-of-domain of 12 unanswerable
}
RETRIEVAL_MAXIMUMS = {"floor_false_refusal_rate": 0.02}  # measured 0: no answerable refused
# The answer slice: 8 answerable + 2 out-of-domain + 2 in-domain unanswerable questions.
ANSWER_SLICE_UNANSWERABLE = ("na-australia", "na-bread", "na-asyncio", "na-gil")
ANSWER_MINIMUMS = {
    "refusal_accuracy": 0.5,  # measured 0.50: the 2 out-of-domain ones, refused by retrieval
    "citation_precision": 0.4,  # measured 0.75 (AMD), 0.60 (Intel)
    "containment": 0.25,  # measured 0.375 (3 of 8)
}
ANSWER_MAXIMUMS = {"false_refusal_rate": 0.125}  # measured 0; at most 1 of the 8 answerable


@pytest.fixture(scope="module")
def items() -> list[EvalItem]:
    return load_dataset(PYTHON_DOCS_DEV)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    if not PYTHON_DOCS_ROOT.is_dir():
        pytest.fail(f"{PYTHON_DOCS_ROOT} is missing: run `make system-deps` (python3.11-doc)")
    settings = Settings(data_dir=tmp_path_factory.mktemp("eval-gate"))
    library = Library(settings)
    result = ingest_path(library.context, corpus_files(PYTHON_DOCS_DEV, PYTHON_DOCS_ROOT),
                         COLLECTION)  # fmt: skip
    assert (result.added, result.failed) == (28, 0), result.errors
    return library


def test_every_gold_snippet_occurs_in_its_source(items: list[EvalItem]) -> None:
    if not PYTHON_DOCS_ROOT.is_dir():
        pytest.fail(f"{PYTHON_DOCS_ROOT} is missing: run `make system-deps` (python3.11-doc)")
    subset = {p.relative_to(PYTHON_DOCS_ROOT).as_posix()
              for p in corpus_files(PYTHON_DOCS_DEV, PYTHON_DOCS_ROOT)}  # fmt: skip
    for item in items:
        for gold in item.gold:
            assert gold.source in subset, (item.id, gold.source)
            text = normalize((PYTHON_DOCS_ROOT / gold.source).read_text())
            assert normalize(gold.snippet) in text, (item.id, gold.snippet)


def test_every_gold_passage_is_whole_in_some_chunk(library: Library, items: list[EvalItem]):
    """Otherwise a chunking change silently caps recall below 1 for that question."""
    with library.engine.connect() as conn:
        chunks = conn.execute(
            sa.text(
                "SELECT d.source, c.text FROM chunks c JOIN documents d ON d.id = c.document_id"
            )
        ).all()
    unreachable = [
        (item.id, gold.snippet)
        for item in items
        for gold in item.gold
        if not any(passage_matches(gold, source, text) for source, text in chunks)
    ]
    assert unreachable == []


def test_retrieval_meets_the_gate(library: Library, items: list[EvalItem], tmp_path: Path):
    report = run_retrieval_eval(items, library, COLLECTION, k=10, dataset="dev")
    json_path, md_path = write_reports(report, tmp_path)
    assert json_path.is_file() and "| recall@10 |" in md_path.read_text()
    assert check_thresholds(report.metrics, RETRIEVAL_MINIMUMS, RETRIEVAL_MAXIMUMS) == []
    refused = {q.id for q in report.questions if q.refused}
    assert {"na-australia", "na-jupiter", "na-worldcup", "na-bread", "na-tides"} <= refused


def test_grounded_answers_refuse_and_cite_only_given_sources(
    library: Library, items: list[EvalItem]
) -> None:
    answerable = [i for i in items if i.answerable][:8]
    by_id = {i.id: i for i in items}
    chosen = answerable + [by_id[qid] for qid in ANSWER_SLICE_UNANSWERABLE]
    settings = library.settings
    report = run_answer_eval(
        chosen, library, create_provider(settings), COLLECTION,
        model=settings.model, max_tokens=48,
    )  # fmt: skip
    write_reports(report, ARTIFACTS / "eval-answers")  # the numbers docs/evals.md quotes
    results = {r.id: r for r in report.questions}
    m = report.metrics
    # Citation validity: every citation names, by number, a passage that was in the prompt.
    assert m["invalid_citations"] == 0
    for r in results.values():
        assert not re.search(r"\[(\d+)\]", r.answer) or r.cited_sources, r
    # Below the relevance floor there is no generation at all: the answer is the refusal.
    for qid in ("na-australia", "na-bread"):
        assert results[qid].refused and results[qid].answer == REFUSAL
    # Rates over a few questions, each a little below what was measured on AMD EPYC and on
    # Intel Xeon under both kinds of kernel (docs/evals.md): one answer that flips on another
    # CPU moves a rate by one question and must not fail the build.
    assert check_thresholds(m, ANSWER_MINIMUMS, ANSWER_MAXIMUMS) == [], m
