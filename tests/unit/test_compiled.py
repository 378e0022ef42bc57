"""Compiled decoder blocks (engine/compiled.py) compute what the eager model computes, at the
default precision, and the warm-up leaves nothing to compile while serving."""

from __future__ import annotations

import contextlib

import pytest
import torch

from chatworks.engine import compiled, int4_kernel
from chatworks.engine.kv_cache import KVCache
from chatworks.engine.precision import load_for_serving
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine
from tests.reference import within_rounding

pytestmark = [
    pytest.mark.kernels,  # computes with real weights: run again on AVX2
    pytest.mark.skipif(
        compiled.unavailable_reason(int4_kernel.available()) is not None,
        reason=str(compiled.unavailable_reason(int4_kernel.available())),
    ),
]

PROMPT = "The lighthouse keeper counted the stairs every night, and"


@pytest.fixture(scope="module")
def model():
    model, tokenizer = load_for_serving(None, "int4")
    compiled.compile_blocks(model)
    torch.set_num_threads(1)  # the tests' own thread: warm up for it, as the engine does
    compiled.warm_up(model)
    return model, tokenizer


def decode_step(model, tokenizer, rows: int, *, eager: bool = False, position_shift: int = 0,
                kv_len_shift: int = 0) -> torch.Tensor:  # fmt: skip
    """Next-token logits [rows, vocab] of one decode step after an eager prefill of PROMPT in
    every row; the shifts break the step on purpose (a wrong cache position, a wrong mask)."""
    prompt = tokenizer.encode(PROMPT)
    n = len(prompt)
    with torch.inference_mode():  # the cache too, as the engine's: inference tensors
        cache = KVCache(model.cfg, rows, torch.float32, 4 * n)
        cache.reserve(rows, 2 * n)
        model(torch.tensor([prompt] * rows), kv=cache.views(0, rows), kv_len=n)
        with compiled.eager(model) if eager else contextlib.nullcontext():
            return model(
                torch.tensor([[prompt[-1]]] * rows), torch.tensor([[n + position_shift]] * rows),
                kv=cache.views(0, rows), kv_len=n + 1 + kv_len_shift, last_only=True,
            )  # fmt: skip


def check_step(fast: torch.Tensor, eager: torch.Tensor, n_layers: int) -> str:
    """Assert what a compiled step must preserve; return the margins, for the log.

    Both paths call the same matmul kernels (bfloat16 activations; packed int4 or dense bf16
    weights); only Inductor's fused code between them (norms, RoPE, softmax, SiLU) computes its
    float32 values another way, and where one lands on the other side of a bf16 rounding the
    next matmul's input moves by one bf16 step. So the logits may part by one bf16 step per
    block, adding up over the blocks (tests/reference.py: eps(bf16) * sqrt(depth) * |logits|,
    ~0.8 here), and the token a step picks must be within twice that of eager's best. A wrong
    cache position, mask or weight moves the logits by whole units (test below)."""
    difference, bound = within_rounding(fast, eager, torch.bfloat16, n_layers, terms=1)
    best = eager.max(-1).values
    picked = eager.gather(-1, fast.argmax(-1, keepdim=True)).squeeze(-1)
    gap = float((best - picked).max())
    assert gap <= 2 * bound, f"picked a token {gap:.3f} below eager's best, allowed {2 * bound:.3f}"
    assert difference <= bound, f"logits differ by {difference:.3f}, bound {bound:.3f}"
    return f"largest difference {difference:.4f} of bound {bound:.4f}; token gap {gap:.4f}"


@pytest.mark.parametrize("rows", [1, 3, 7])  # one row, the packed kernel's few, dense weights
def test_a_compiled_decode_step_gives_the_eager_logits(model, rows):
    model, tokenizer = model
    programs = dict(model.decode_programs)
    runs = sum(program.runs for program in programs.values())
    fast = decode_step(model, tokenizer, rows)
    eager = decode_step(model, tokenizer, rows, eager=True)
    print(f"{rows} rows: {check_step(fast, eager, model.cfg.n_layers)}")
    groups = -(-model.cfg.n_layers // compiled.GROUP_BLOCKS)
    assert sum(program.runs for program in programs.values()) == runs + groups  # compiled ran
    assert model.decode_programs == programs  # and the warm-up had built this family


def swap_mlp_weights(model) -> None:
    """A wrong weight: two blocks' MLP weights exchanged in place (read by the compiled programs
    at every call, so nothing is rebuilt); a second call swaps them back."""
    mlps = model.layers[10].mlp, model.layers[11].mlp
    for one, other in zip(*(mlp.buffers() for mlp in mlps), strict=True):
        torch.utils.swap_tensors(one, other)


@pytest.mark.parametrize("broken", ["position", "mask", "weight"])
def test_the_check_fails_a_broken_step(model, broken):
    """The bound is loose enough for another CPU's rounding and still tight enough to fail a
    step that is wrong: keys written one position late, a mask that hides the step's own key,
    two blocks' weights swapped."""
    model, tokenizer = model
    eager = decode_step(model, tokenizer, 3, eager=True)
    if broken == "weight":
        swap_mlp_weights(model)
        try:
            fast = decode_step(model, tokenizer, 3)
        finally:
            swap_mlp_weights(model)
    else:
        shift = {"position": {"position_shift": 1}, "mask": {"kv_len_shift": -1}}[broken]
        fast = decode_step(model, tokenizer, 3, **shift)
    with pytest.raises(AssertionError, match=r"differ|below") as failure:
        check_step(fast, eager, model.cfg.n_layers)
    print(f"{broken}: {failure.value}")


def test_an_engine_that_compiles_serves_once_started():
    model, tokenizer = load_for_serving(None, "int4")
    engine = Engine(model, slots=2, compile=True).start()
    try:
        programs = dict(model.decode_programs)
        warm_up_runs = sum(program.runs for program in programs.values())
        tokens, finish = engine.generate(
            tokenizer.encode("List three colors:"), SamplingParams(max_tokens=8, temperature=0)
        )
        assert len(tokens) == 8 and finish.reason == "length"
        assert model.decode_programs == programs
        # The warm-up ran the programs too: the decode steps must add runs of their own.
        assert sum(program.runs for program in programs.values()) > warm_up_runs
    finally:
        engine.stop()


def test_a_restart_loads_the_programs_built_before(model):
    """A second model (as a restarted server's) builds no program: the packages the warm-up
    compiled are found on disk by name, and they compute the first model's logits."""
    first, tokenizer = model
    folder = compiled._package_folder()
    kept = {path: path.stat().st_mtime for path in folder.glob("*.pt2")}
    assert len(kept) >= len(compiled.ROW_FAMILIES)
    again, _ = load_for_serving(None, "int4")
    compiled.compile_blocks(again)
    compiled.warm_up(again)
    assert {path: path.stat().st_mtime for path in folder.glob("*.pt2")} == kept
    assert torch.equal(decode_step(again, tokenizer, 3), decode_step(first, tokenizer, 3))
