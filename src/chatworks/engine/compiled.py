"""Compiled decoder blocks for serving: the same model code, fewer trips through Python.

A batch-1 decode step of the default model runs ~2,500 small eager ops (norms, RoPE, casts,
cache writes, softmax) around its 121 matmuls, and dispatching them cost more than the matmuls
themselves. `compile_blocks` hands the decoder blocks to torch.compile, five at a time:
Inductor fuses their elementwise work into a few C++ loops, and its C++ wrapper calls the packed
int4 kernels without returning to Python between them. All groups share one compiled graph per
input shape family (the blocks' code is the same; their weights are graph inputs), so
compiling is tens of seconds the first time, and `warm_up` does it before the engine takes
requests. Shapes are symbolic (batch rows, cache length), with a graph each for one row, a few
rows (the packed int4 kernel) and many (the dense copy).

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
from torch import nn

from chatworks.engine.kv_cache import KVCache
from chatworks.engine.precision import _PackedLinear
from chatworks.model.llama import Llama

# Blocks per compiled graph. Entering a graph costs ~80 us (Dynamo's guards and prologue), 30
# of them ~2.5 ms of a 13 ms step; a graph of five blocks takes twice as long to compile the
# first time (~50 s against ~25 s for all shapes, cached on disk after) and saves ~2 ms a
# step; one graph of all 30 is a C++ file g++ took over 10 minutes on (docs/benchmarks.md).
GROUP_BLOCKS = 5
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


class _Group(nn.Module):
    """Consecutive decoder blocks entered as one compiled graph. Kept out of the model's own
    module tree (the blocks stay the model's), so state dicts and adapters see no change."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, cos, sin, mask, positions, kv, kv_len) -> torch.Tensor:
        for block, block_kv in zip(self.blocks, kv, strict=True):
            x = block(x, cos, sin, mask, positions, block_kv, kv_len)
        return x


def compile_blocks(model: Llama, blocks_per_graph: int = GROUP_BLOCKS) -> None:
    """Decode steps (one token per sequence) run the blocks compiled, `blocks_per_graph` to a
    graph (`bench/kernels.py --blocks-per-graph` measures the choice); prefill stays eager: its
    matmuls are big enough that dispatch costs little, and its shapes vary more."""
    eager = model.run_blocks
    starts = range(0, len(model.layers), blocks_per_graph)
    groups = [_Group(list(model.layers[i : i + blocks_per_graph])) for i in starts]
    fast = [torch.compile(g.forward, dynamic=True, options={"cpp_wrapper": True}) for g in groups]

    def run_blocks(x, cos, sin, mask, positions, kv, kv_len):
        if x.shape[1] != 1 or kv is None:
            return eager(x, cos, sin, mask, positions, kv, kv_len)
        for start, group in zip(starts, fast, strict=True):
            x = group(x, cos, sin, mask, positions, kv[start : start + blocks_per_graph], kv_len)
        return x

    model.run_blocks = run_blocks


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
