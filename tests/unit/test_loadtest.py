"""The load kit's arithmetic: arrival schedules, sweep rates, percentiles, goodput, the workload."""

from __future__ import annotations

import itertools

import pytest

from chatworks.loadtest.client import Result
from chatworks.loadtest.report import SLO, summarize
from chatworks.loadtest.runner import Run
from chatworks.loadtest.schedule import Load, arrivals, sweep_rates
from chatworks.loadtest.workload import Workload


def test_constant_arrivals_are_evenly_spaced_and_poisson_ones_are_seeded():
    assert list(itertools.islice(arrivals(Load("constant", rate=4.0), 0), 4)) == [
        0,
        0.25,
        0.5,
        0.75,
    ]
    poisson = list(itertools.islice(arrivals(Load("poisson", rate=4.0), 7), 200))
    assert poisson == list(itertools.islice(arrivals(Load("poisson", rate=4.0), 7), 200))
    assert poisson != list(itertools.islice(arrivals(Load("poisson", rate=4.0), 8), 200))
    assert all(a < b for a, b in itertools.pairwise(poisson))
    with pytest.raises(ValueError, match="rate"):
        next(arrivals(Load("constant"), 0))


def test_sweep_rates_lie_strictly_between_the_two_runs():
    assert sweep_rates(1.0, 4.0, 2) == [2.0, 3.0]
    # Concurrency slower than one at a time (noise, a server that does not batch): still points.
    assert sweep_rates(4.0, 1.0, 2) == [2.0, 3.0]
    assert sweep_rates(3.0, 3.0, 2) == [3.0, 3.0]
    assert sweep_rates(0.0, 2.0, 2) == []


def result(latency, ttft=None, tokens=0, status=200, error=None, gaps=()):
    return Result("stream", 0.0, status, latency, ttft, list(gaps), tokens, 0, error)


def test_summary_counts_errors_by_status_and_goodput_by_slo():
    run = Run(Load("concurrent", 2), elapsed=2.0, results=[
        result(1.0, ttft=0.1, tokens=11, gaps=[0.09] * 10),  # TPOT 90 ms
        result(0.5, ttft=0.4, tokens=11, gaps=[0.01] * 10),  # TPOT 10 ms
        result(0.2, status=503, error="overloaded"),
        result(0.3, status=200, error="model_error"),  # a stream that failed after its 200
        result(5.0, status=0, error="timeout"),
    ])  # fmt: skip
    s = summarize(run, SLO(ttft_ms=200))
    assert (s["requests"], s["succeeded"]) == (5, 2)
    assert s["errors"] == {"503": 1, "200 then model_error": 1, "transport": 1}
    assert s["requests_per_s"] == 1.0 and s["output_tokens_per_s"] == 11.0
    assert s["tpot_ms"]["p50"] == pytest.approx(50.0)
    assert s["goodput"]["requests_per_s"] == 0.5  # only the first met TTFT <= 200 ms
    assert summarize(run, SLO())["goodput"]["requests_per_s"] == 1.0


def test_a_workload_sends_the_same_request_for_the_same_number():
    w = Workload("mix", "m", prompt_words=20, seed=3)
    assert w.call(5) == w.call(5) and w.call(5) != w.call(11)
    assert [w.call(i).scenario for i in range(6)] == ["stream"] * 3 + ["ask"] * 2 + ["embeddings"]
    words = Workload("chat", "m", prompt_words=20, seed=3)
    first, other = (words.call(i).json["messages"][0]["content"] for i in (0, 8))
    assert first[:40] != other[:40], "no two requests share a prefix with --prompt-words"
    assert Workload("ingest", "m").call(0).files["file"][0].endswith(".md")
    with pytest.raises(ValueError, match="scenario"):
        Workload("video", "m")


def test_a_conversation_turn_carries_the_turns_before_it_and_keeps_its_opening():
    w = Workload("conversation", "m", prompt_words=10, conversations=3, turns=2)
    calls = [w.call(i).json["messages"] for i in range(12)]
    # Requests go round the conversations: 0, 1, 2 open them, 3, 4, 5 are their second turns.
    assert [len(m) for m in calls[:6]] == [1, 1, 1, 3, 3, 3]
    assert calls[3][0] == calls[0][0] and calls[3][1]["role"] == "assistant"
    assert len({m[0]["content"] for m in calls[:3]}) == 3, "three different openings"
    # After its last turn a conversation gives way to a new one (new opening, no history).
    assert len(calls[6]) == 1 and calls[6][0] != calls[0][0]
    assert w.call(4).streamed and w.call(4) == w.call(4)
