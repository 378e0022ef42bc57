"""Eval metrics on hand-computed cases, gold matching, dataset validation and threshold checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chatworks.evals import metrics
from chatworks.evals.datasets import (
    PYTHON_DOCS_DEV,
    DatasetError,
    GoldPassage,
    load_dataset,
    passage_matches,
    source_matches,
)
from chatworks.evals.report import check_thresholds


def test_judge_credits_each_gold_passage_once():
    # results are the sets of gold passages each retrieved chunk covers
    results = [set(), {1}, {1}, {0, 1}, set()]
    judged = metrics.judge(results, 2, lambda r, g: g in r)
    assert judged == [None, 1, None, 0, None]


def test_recall_mrr_ndcg_by_hand():
    judged = [None, 1, None, 0, None]  # gold passages found at ranks 2 and 4, of 2
    assert metrics.recall_at_k(judged, 2, 3) == 0.5
    assert metrics.recall_at_k(judged, 2, 10) == 1.0
    assert metrics.reciprocal_rank(judged) == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert metrics.ndcg_at_k(judged, 2, 10) == pytest.approx(dcg / ideal)
    assert metrics.ndcg_at_k([0], 1, 10) == 1.0
    # one gold, found at rank 3 of 3 (= 0.5), but the cut-off at 2 misses it
    assert metrics.ndcg_at_k([None, None, 0], 1, 10) == pytest.approx(0.5)
    assert metrics.ndcg_at_k([None, None, 0], 1, 2) == 0.0
    assert metrics.reciprocal_rank([None, None]) == 0.0
    with pytest.raises(ValueError):
        metrics.recall_at_k([], 0, 10)


def test_citation_precision_and_recall():
    gold = ["a.rst.txt", "b.rst.txt"]
    assert metrics.citation_precision(["a.rst.txt", "x.rst.txt"], gold) == 0.5
    assert metrics.citation_recall(["a.rst.txt", "x.rst.txt"], gold) == 0.5
    assert metrics.citation_precision(["a.rst.txt", "a.rst.txt"], gold) == 1.0  # distinct docs
    assert metrics.citation_precision([], gold) is None  # nothing cited: undefined, not 0 or 1
    assert metrics.citation_recall([], gold) == 0.0
    assert metrics.citation_recall(["a.rst.txt"], []) is None


def test_refusal_accuracy_and_mean_skip_undefined():
    assert metrics.refusal_accuracy([True, False, True, True]) == 0.75
    assert metrics.refusal_accuracy([]) is None
    assert metrics.mean([1.0, None, 0.0]) == 0.5
    assert metrics.mean([None]) is None


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        ("Use the  ZIP function.", "zip", True),
        ("The built-in zipfile module", "zip", False),  # not inside a longer word
        ("You can use the ** operator", "**", True),
        ("the variable _ holds it", "_", True),
        ("the variable __name__", "_", False),
        ("Use mode 'a' to append", "'a'", True),
        ("It is Monty\nPython's show", "Monty Python", True),  # whitespace-insensitive
        ("I don't know", "re", False),
    ],
)
def test_contains_answer(answer: str, gold: str, expected: bool):
    assert metrics.contains_answer(answer, gold) is expected


def test_gold_matching_by_source_suffix_and_snippet():
    gold = GoldPassage("tutorial/datastructures.rst.txt", "paired with the :func:`zip`")
    stored = "/usr/share/doc/python3.11/html/_sources/tutorial/datastructures.rst.txt"
    assert passage_matches(gold, stored, "entries can be\n   paired with the :func:`zip` func")
    assert not passage_matches(gold, stored, "something else entirely")
    assert not passage_matches(gold, "/x/library/datastructures.rst.txt", gold.snippet)
    assert source_matches("/a/tutorial/x.rst.txt", "x.rst.txt")
    assert not source_matches("/a/mytutorial/x.rst.txt", "tutorial/x.rst.txt")


def _write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = {
    "id": "q1",
    "question": "Why?",
    "gold": [{"source": "a.txt", "snippet": "because"}],
    "answer": "because",
    "answerable": True,
}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({**GOOD, "gold": []}, "needs at least one gold"),
        ({**GOOD, "answerable": False}, "unanswerable question has no gold"),
        ({**GOOD, "question": " "}, "question must be"),
        ({k: v for k, v in GOOD.items() if k != "answer"}, "missing answer"),
        ({**GOOD, "gold": [{"source": "a.txt"}]}, "source and snippet"),
        ({**GOOD, "answerable": "yes"}, "true or false"),
    ],
)
def test_dataset_validation_names_the_line(tmp_path: Path, row: dict, message: str):
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset(_write(tmp_path, GOOD | {"id": "q0"}, row))
    assert ":2:" in str(error.value)


def test_dataset_rejects_duplicate_ids_and_bad_json(tmp_path: Path):
    with pytest.raises(DatasetError, match="duplicate id"):
        load_dataset(_write(tmp_path, GOOD, GOOD))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_dataset(bad)


def test_bundled_dev_set_is_valid_and_big_enough():
    items = load_dataset(PYTHON_DOCS_DEV)
    assert len(items) >= 60
    assert sum(not i.answerable for i in items) >= 10
    # the first dozen questions mix both kinds, so `--limit 12` measures refusals too
    assert any(not i.answerable for i in items[:12])


def test_thresholds_fail_below_minimum_above_maximum_and_on_missing_values():
    values = {"recall@10": 0.8, "mrr": 0.5, "invalid_citations": 1.0, "refusal": None}
    assert check_thresholds(values, {"recall@10": 0.7, "mrr": None}) == []
    failures = check_thresholds(
        values, {"recall@10": 0.9, "refusal": 0.5}, {"invalid_citations": 0}
    )
    assert len(failures) == 3
    assert "recall@10 = 0.800 is below the minimum 0.9" in failures
    assert any("invalid_citations" in f and "above" in f for f in failures)
    assert any("refusal could not be computed" in f for f in failures)


def test_token_f1_squad_style_by_hand():
    # answer tokens after normalisation: [zip, function]; gold: [zip]
    assert metrics.token_f1("The zip() function!", "zip") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert metrics.token_f1("An Apple, a pear", "apple pear") == 1.0  # articles, case, commas
    assert metrics.token_f1("no overlap here", "zip") == 0.0
    # shared tokens count with multiplicity: answer [a, b, b] vs gold [b, b, c] share 2
    assert metrics.token_f1("x y y", "y y z") == pytest.approx(2 / 3)
    assert metrics.token_f1("", "") == 1.0 and metrics.token_f1("", "zip") == 0.0


def test_groundedness_counts_claims_whose_words_are_in_the_quotes():
    quotes = ["The kettle has a warranty of two years.", "It boils water in 90 seconds."]
    # claim 1 {kettle, warranty, years}: all in the quotes; claim 2 {ships, free, europe}: none
    answer = "The kettle's warranty is two years [1]. It ships free across Europe."
    assert metrics.groundedness(answer, quotes) == 0.5
    assert metrics.groundedness("The kettle boils water [2].", quotes) == 1.0
    assert metrics.groundedness("The kettle boils water.", []) == 0.0  # nothing cited
    assert metrics.groundedness("", quotes) is None  # no claim at all
    # {kettle, boils, milk}: 2 of 3 content words supported, enough at 0.5, not at 0.9
    assert metrics.groundedness("The kettle boils milk.", quotes) == 1.0
    assert metrics.groundedness("The kettle boils milk.", quotes, support=0.9) == 0.0


def test_percentile_interpolates_like_numpy():
    values = [4.0, 1.0, 3.0, 2.0]
    assert metrics.percentile(values, 50) == 2.5
    assert metrics.percentile(values, 95) == pytest.approx(3.85)
    assert metrics.percentile([7.0], 95) == 7.0
    assert metrics.percentile([], 50) is None
