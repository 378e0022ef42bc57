"""Calibration bookkeeping: which questions a fit may use, refusal rates as a user sees them
(the floor's refusals included), and the trade-off table and plot over thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatworks.evals.calibrate import (
    HELDOUT,
    PARAPHRASE,
    TRAINING,
    Examples,
    pooled,
    refusal_rates,
    split,
    tradeoff,
    write_tradeoff,
)
from chatworks.evals.datasets import EvalItem
from chatworks.rag.answerability import AnswerabilityModel, Features


def item(qid: str, *tags: str) -> EvalItem:
    return EvalItem(qid, "q?", (), None, False, tags)


def test_split_never_puts_heldout_or_paraphrases_in_training() -> None:
    parts = split([item("a"), item("b", "dev"), item("c", "heldout"),
                   item("d", "heldout", "paraphrase"), item("e", "paraphrase", "dev")])  # fmt: skip
    assert {k: [i.id for i in v] for k, v in parts.items()} == {
        TRAINING: ["a", "b"],
        HELDOUT: ["c"],
        PARAPHRASE: ["d", "e"],
    }


# The probability is the logistic of 10 x (similarity margin - 0.5): a margin m gives p > 0.5
# exactly when m > 0.5, so thresholds are easy to reason about.
MODEL = AnswerabilityModel({"similarity_margin": 10.0, "window_margin": 0.0,
                            "window_coverage": 0.0, "context_coverage": 0.0,
                            "unknown_share": 0.0}, -5.0, 0.5)  # fmt: skip


def margin(m: float) -> Features:
    return Features(m, 0.0, 0.0, 0.0, 0.0)


def test_refusal_rates_count_the_floor_refusals_as_refused() -> None:
    # Answerable: margins 0.9 (answered), 0.2 (refused by the model), one floor refusal.
    # Unanswerable: 0.1 (refused), 0.8 (answered), one floor refusal.
    found = Examples([margin(0.9), margin(0.2), margin(0.1), margin(0.8)],
                     [True, True, False, False], [True, False])  # fmt: skip
    rates = refusal_rates(MODEL, found)
    assert rates.threshold == 0.5
    assert rates.false_refusals == pytest.approx(2 / 3)
    assert rates.unanswerable_refused == pytest.approx(2 / 3)
    # A threshold above every probability refuses everything.
    everything = refusal_rates(MODEL, found, threshold=1.0)
    assert (everything.false_refusals, everything.unanswerable_refused) == (1.0, 1.0)
    assert refusal_rates(MODEL, Examples([], [], [])).false_refusals is None


def test_the_tradeoff_refuses_more_of_both_kinds_as_the_threshold_rises(tmp_path: Path) -> None:
    answerable = Examples([margin(0.3 + i / 20) for i in range(10)], [True] * 10, [])
    unanswerable = Examples([margin(i / 20) for i in range(10)], [False] * 10, [])
    both = pooled([answerable, unanswerable])
    assert len(both.features) == 20
    curves = tradeoff(MODEL, {"all": both})
    rates = curves["all"]
    assert MODEL.threshold in [r.threshold for r in rates]
    assert [r.threshold for r in rates] == sorted(r.threshold for r in rates)
    false_refusals = [r.false_refusals for r in rates]
    refused = [r.unanswerable_refused for r in rates]
    assert false_refusals == sorted(false_refusals) and refused == sorted(refused)
    assert false_refusals[0] < false_refusals[-1] and refused[0] < refused[-1]

    written = write_tradeoff(curves, MODEL.threshold, tmp_path / "report")
    table = written[0].read_text()
    assert "| threshold | all: false refusals / unanswerable refused |" in table
    chosen = [line for line in table.splitlines() if line.startswith("| **")]
    assert len(chosen) == 1 and chosen[0].startswith("| **0.500 |")
    if len(written) > 1:  # with matplotlib (the dev extras): the plot next to the table
        assert written[1].suffix == ".png" and written[1].stat().st_size > 0
