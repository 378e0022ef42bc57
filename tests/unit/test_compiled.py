"""Compiled decoder blocks (engine/compiled.py) compute what the eager model computes, at the
default precision, and the warm-up leaves nothing to compile while serving."""

from __future__ import annotations

import pytest
import torch
import torch.profiler
from torch._dynamo.utils import counters

from chatworks.engine import compiled
from chatworks.engine.kv_cache import KVCache
from chatworks.engine.precision import load_for_serving
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine

pytestmark = [
    pytest.mark.kernels,  # computes with real weights: run again on AVX2
    pytest.mark.skipif(
        compiled.unavailable_reason() is not None, reason=str(compiled.unavailable_reason())
    ),
]


@pytest.fixture(scope="module")
def model():
    model, tokenizer = load_for_serving(None, "int4")
    compiled.compile_blocks(model)
    torch.set_num_threads(1)  # the tests' own thread: warm up for it, as the engine does
    compiled.warm_up(model)
    return model, tokenizer


@pytest.mark.parametrize("rows", [1, 3, 7])  # one row, the packed kernel's few, dense weights
def test_a_compiled_decode_step_gives_the_eager_logits(model, rows):
    model, tokenizer = model
    prompt = tokenizer.encode("The lighthouse keeper counted the stairs every night, and")
    n = len(prompt)
    graphs = counters["stats"]["unique_graphs"]
    with torch.inference_mode():  # the cache too, as the engine's: inference tensors
        cache = KVCache(model.cfg, rows, torch.float32, 4 * n)
        cache.reserve(rows, 2 * n)
        model(torch.tensor([prompt] * rows), kv=cache.views(0, rows), kv_len=n)  # eager prefill
        step = lambda: model(  # noqa: E731
            torch.tensor([[prompt[-1]]] * rows), torch.tensor([[n]] * rows),
            kv=cache.views(0, rows), kv_len=n + 1, last_only=True,
        )  # fmt: skip
        with torch.profiler.profile() as profile:
            fast = step()
        with torch.compiler.set_stance("force_eager"):
            eager = step()
    # The same kernels; only the fused elementwise code rounds its own way. A wrong cache
    # position, mask or weight moves logits by whole units (they span ~20).
    assert (fast - eager).abs().max() < 0.05
    ran = {event.name for event in profile.events()}
    assert any(name.startswith("Torch-Compiled Region") for name in ran)
    assert counters["stats"]["unique_graphs"] == graphs  # the warm-up compiled this shape


def test_an_engine_that_compiles_serves_once_started():
    model, tokenizer = load_for_serving(None, "int4")
    engine = Engine(model, slots=2, compile=True).start()
    try:
        graphs = counters["stats"]["unique_graphs"]
        tokens, finish = engine.generate(
            tokenizer.encode("List three colors:"), SamplingParams(max_tokens=8, temperature=0)
        )
        assert len(tokens) == 8 and finish.reason == "length"
        assert counters["stats"]["unique_graphs"] == graphs
    finally:
        engine.stop()
