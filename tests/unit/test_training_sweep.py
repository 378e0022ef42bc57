"""The scaling sweep: two tiny depths train, and the sweep writes its plot, fit and report."""

from __future__ import annotations

import json

import pytest

from chatworks.training.presets import get_preset
from chatworks.training.sweep import fit_power_law, frontier, sweep
from tests.unit.training_corpus import one_thread, write_corpus

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def test_fit_recovers_a_power_law():
    xs = [1e6, 1e7, 1e8, 1e9]
    alpha, a = fit_power_law(xs, [3.0 * x**-0.2 for x in xs])
    assert alpha == pytest.approx(0.2) and a == pytest.approx(3.0)


def test_frontier_is_the_lower_envelope():
    runs = [{"curve": [{"flops": 1, "bpb": 3.0}, {"flops": 4, "bpb": 2.0}]},
            {"curve": [{"flops": 2, "bpb": 2.5}, {"flops": 8, "bpb": 2.2}]}]  # fmt: skip
    assert frontier(runs) == [(1, 3.0), (2, 2.5), (4, 2.0)]


def test_a_sweep_of_two_depths_writes_its_plot(tmp_path):
    corpus = write_corpus(tmp_path)
    preset = get_preset("micro")
    report = sweep(preset, [1, 2], 4 * preset.batch_tokens, tmp_path / "sweep", [corpus],
                   track=False, log=lambda _: None)  # fmt: skip
    result = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["depth"] for r in result["runs"]] == [1, 2]
    small, large = result["runs"]
    assert large["parameters"] > small["parameters"] and large["flops"] > small["flops"]
    assert small["tokens"] == large["tokens"] == 4 * preset.batch_tokens  # matched budgets
    assert "alpha_flops" in result
    png = (tmp_path / "sweep" / "sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "sweep.png" in report.read_text()
