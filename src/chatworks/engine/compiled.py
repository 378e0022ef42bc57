"""Compiled decoder blocks for serving: the same model code, fewer trips through Python.

A batch-1 decode step of the default model runs ~2,500 small eager ops (norms, RoPE, casts,
cache writes, softmax) around its 211 matmuls, and dispatching them cost more than the matmuls
themselves. `compile_blocks` hands each decoder block to torch.compile: Inductor fuses a block's
elementwise work into a few C++ loops, and its C++ wrapper calls the packed int4 kernels without
returning to Python between them. All blocks share one compiled graph per input shape family
(the block's code is the same; its weights are graph inputs), so compiling is seconds, not
minutes, and `warm_up` does it before the engine takes requests. Shapes are symbolic (batch
rows, cache length), with a graph each for one row, a few rows (the packed int4 kernel) and
many (the dense copy).

Needs a C++ compiler at run time, and torch's AVX-512 CPU kernels unless every packed linear
runs on the integer-dot kernel (`unavailable_reason`): under torch's AVX2 kernels
(`ATEN_CPU_CAPABILITY=avx2`, or a CPU without AVX-512), compiled blocks that call torch's own
int4 kernel return NaN logits for the 1-4-row graphs and corrupt the heap ("double free or
corruption", "corrupted size vs. prev_size"); eager calls of the same kernel, and the compiled
5+-row graphs (dense weights), are right, so it is that kernel as called from compiled code,
not our graph (docs/log.md, 2026-12-06). Our integer-dot kernel compiled there gives eager's
logits, so such a model compiles on AVX2 too. Inductor keeps what it compiled on disk
(`TORCHINDUCTOR_CACHE_DIR`, by default under /tmp), so a restart reuses it.
Does not cover: compiling training, or CUDA graphs.
"""

from __future__ import annotations

import os
import shutil

import torch

from chatworks.engine.kv_cache import KVCache
from chatworks.engine.precision import _PackedLinear
from chatworks.model.llama import Llama

# Decode batches that reach distinct graphs: one row, a few (the packed int4 kernel takes up to
# 4) and many (dense weights). Warm-up sizes must differ from the model's own dimensions and
# from each other (37 cached positions, 41 allocated): Inductor would take equal sizes for one.
WARM_UP_ROWS = (1, 2, 5)
WARM_UP_POSITIONS, WARM_UP_CAPACITY = 37, 40


def unavailable_reason(integer_only: bool = False) -> str | None:
    """Why compiled blocks cannot run here, or None when they can; `integer_only`: the model's
    packed linears all run on the integer-dot kernel (`integer_only(model)`)."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "no C++ compiler (g++, or $CXX) for Inductor's code"
    if torch.backends.cpu.get_cpu_capability() != "AVX512" and not integer_only:
        return ("torch's CPU kernels here are not AVX-512 ones, and its int4 kernel compiled "
                "under them corrupts memory")  # fmt: skip
    return None


def integer_only(model: Llama) -> bool:
    """Whether every packed linear of `model` (there is one) runs on the integer-dot kernel."""
    packed = [m for m in model.modules() if isinstance(m, _PackedLinear)]
    return bool(packed) and all(m.integer_kernel for m in packed)


def compile_blocks(model: Llama) -> None:
    """Decode steps (one token per sequence) run each block compiled; prefill stays eager: its
    matmuls are big enough that dispatch costs little, and its shapes vary more."""
    for block in model.layers:
        eager = block.forward
        fast = torch.compile(eager, dynamic=True, options={"cpp_wrapper": True})
        block.forward = lambda x, *args, eager=eager, fast=fast: (
            fast(x, *args) if x.shape[1] == 1 else eager(x, *args)
        )


def warm_up(model: Llama) -> None:
    """Compile the graphs of `WARM_UP_ROWS`, on a scratch cache. Call on the thread (and with
    the torch thread count) that will serve: the C++ loops are built for it."""
    rows = max(WARM_UP_ROWS)
    with torch.inference_mode():  # as the engine's own cache and forwards are
        cache = KVCache(model.cfg, rows, model.embed_tokens.weight.dtype, WARM_UP_CAPACITY)
        cache.reserve(rows, WARM_UP_CAPACITY)
        for rows in WARM_UP_ROWS:
            model(
                torch.zeros(rows, 1, dtype=torch.long),
                torch.full((rows, 1), WARM_UP_POSITIONS),
                kv=cache.views(0, rows), kv_len=WARM_UP_POSITIONS + 1, last_only=True,
            )  # fmt: skip
