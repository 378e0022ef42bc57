"""Compiled decoder blocks for serving: the same model code, fewer trips through Python.

A batch-1 decode step of the default model runs ~2,500 small eager ops (norms, RoPE, casts,
cache writes, softmax) around its 121 matmuls, and dispatching them cost more than the matmuls
themselves. `compile_blocks` runs the decoder blocks of a decode step as programs compiled
ahead of time, three blocks to a program: `torch.export` traces a group's forward with its
weights as arguments, and AOTInductor compiles it to a C++ library (elementwise work fused into
a few loops, the packed int4 kernels called from C++). All groups run one program per row
family (the blocks' code is the same; their weights are arguments, read from the modules at
every call): one row, a few (the packed kernel) and many (the dense copy), with symbolic rows,
cache length and capacity. A program is entered by one C++ call; torch.compile's entry (Dynamo's
guards, AOT autograd's Python wrappers) cost ~0.15 ms per group, and this way a batch-1 step of
the default model is ~1.2-1.3x faster (docs/benchmarks.md, 2026-12-07, a scratch timing).
`warm_up` builds the programs before the engine takes requests (~36 s for the three, the
first time); they are kept as packages in Inductor's cache folder (`TORCHINDUCTOR_CACHE_DIR`, by
default under /tmp), named by the traced graph, torch's version, the CPU kernels and the thread
count (their C++ loops are built for it), so a restart only traces and loads them (~3 s).

Needs a C++ compiler at run time, and torch's AVX-512 CPU kernels unless every packed linear
runs on the integer-dot kernel (`unavailable_reason`): under torch's AVX2 kernels
(`ATEN_CPU_CAPABILITY=avx2`, or a CPU without AVX-512), compiled blocks that call torch's own
int4 kernel return NaN logits for the 1-4-row graphs and corrupt the heap ("double free or
corruption", "corrupted size vs. prev_size"); eager calls of the same kernel, and the compiled
5+-row graphs (dense weights), are right, so it is that kernel as called from compiled code,
not our graph (docs/log.md, 2026-12-06). Our integer-dot kernel compiled there gives eager's
logits, so such a model compiles on AVX2 too.
Does not cover: compiling training, or CUDA graphs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch._inductor.runtime.cache_dir_utils import cache_dir

from chatworks import built
from chatworks.engine.kv_cache import KVCache
from chatworks.engine.precision import _PackedLinear
from chatworks.model.llama import Llama

# Blocks per compiled program. Entering one costs little, so the count only trades start-up
# time: 1 thread, batch-1 step 1.76-1.87x faster than eager for 1, 2, 3, 5 or 10 blocks (level
# within the machine's noise), the first warm-up 25, 29, 36, 48 and 62 s, a restart's 1.9-7.8 s
# (`bench/kernels.py --blocks-per-graph 1,2,3,5,10`, docs/benchmarks.md).
GROUP_BLOCKS = 3
# Decode batches that run distinct programs: one row, a few (the packed int4 kernel takes up to
# 4) and many (dense weights), up to a bound (more rows run eager).
_FEW = _PackedLinear.MAX_PACKED_ROWS
ROW_FAMILIES = ((1, 1), (2, _FEW), (_FEW + 1, 4096))
# Warm-up sizes must differ from the model's own dimensions and from each other (37 cached
# positions, 41 allocated): export would take equal sizes for one and specialize.
WARM_UP_ROWS = tuple(low for low, _ in ROW_FAMILIES)
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
    """Consecutive decoder blocks, run as one compiled program. Kept out of the model's own
    module tree (the blocks stay the model's), so state dicts and adapters see no change."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        # Where each weight lives (module, parameters or buffers, name), read at every call: a
        # tensor assigned after the build is the one used, as in the eager model (a module
        # replaced is not: compile after changing the model's structure).
        self.places, self.names = [], []
        for prefix, owner in self.named_modules():
            for kind in ("_parameters", "_buffers"):
                for name, tensor in getattr(owner, kind).items():
                    if tensor is not None:
                        self.places.append((owner, kind, name))
                        self.names.append(f"{prefix}.{name}" if prefix else name)

    def weights(self) -> list[torch.Tensor]:
        return [getattr(owner, kind)[name] for owner, kind, name in self.places]

    def forward(self, x: torch.Tensor, cos, sin, mask, positions, kv) -> torch.Tensor:
        # The cache length is the mask's last size: export keeps a size symbolic, where an int
        # argument (the eager `kv_len`) would be baked into the program.
        for block, block_kv in zip(self.blocks, kv, strict=True):
            x = block(x, cos, sin, mask, positions, block_kv, mask.shape[-1])
        return x


class _WithWeights(nn.Module):
    """A group's forward with its weights as arguments: what is exported, so one program
    serves every group (their code is the same)."""

    def __init__(self, group: _Group):
        super().__init__()
        self.group = group

    def forward(self, weights, x, cos, sin, mask, positions, kv) -> torch.Tensor:
        state = dict(zip(self.group.names, weights, strict=True))
        return torch.func.functional_call(self.group, state, (x, cos, sin, mask, positions, kv))


class _Program:
    """The decode-step program of one row family, compiled ahead of time (AOTInductor) for
    this thread count, or loaded from the package an earlier process built for the same graph."""

    def __init__(self, group: _Group, example: tuple, rows: tuple[int, int]):
        batch = (
            torch.export.Dim.STATIC
            if rows[0] == rows[1]
            else torch.export.Dim("rows", min=rows[0], max=rows[1])
        )
        kv_len, capacity = torch.export.Dim("kv_len", min=2), torch.export.Dim("capacity", min=2)
        weights, _, _, _, _, _, kv = example
        dynamic = {"weights": [None] * len(weights), "x": {0: batch}, "cos": {0: batch},
                   "sin": {0: batch}, "mask": {0: batch, 3: kv_len}, "positions": {0: batch},
                   "kv": [({0: batch, 2: capacity},) * 2 for _ in kv]}  # fmt: skip
        with warnings.catch_warnings():  # torch's own use of a name it deprecated
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)
            exported = torch.export.export(_WithWeights(group), example, dynamic_shapes=dynamic,
                                           strict=False)  # fmt: skip
            target = _package_path(exported)
            if not target.exists():
                built.write(target, lambda out: torch._inductor.aoti_compile_and_package(
                    exported, package_path=str(out)))  # fmt: skip
            self.run = torch._inductor.aoti_load_package(str(target)).loader.run
        self.runs = 0

    def __call__(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        self.runs += 1
        (out,) = self.run(inputs)
        return out


def _package_path(exported: torch.export.ExportedProgram) -> Path:
    """Named by what decides the compiled code: the graph with its inputs' shapes, dtypes and
    strides (not its comments, which name source files and lines), torch's version, the CPU
    kernels' capability and the thread count."""
    code = exported.graph_module.print_readable(
        print_output=False, include_stride=True, include_device=True
    )
    graph = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("#"))
    key = hashlib.sha256(graph.encode())
    key.update(str(exported.range_constraints).encode())
    key.update(f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()} "
               f"{torch.get_num_threads()}".encode())  # fmt: skip
    return _package_folder() / f"decode-{key.hexdigest()[:24]}.pt2"


def _package_folder() -> Path:
    return Path(cache_dir()) / "chatworks"


def compile_blocks(model: Llama, blocks_per_graph: int = GROUP_BLOCKS) -> None:
    """Decode steps (one token per sequence) run the blocks compiled, `blocks_per_graph` to a
    program (`bench/kernels.py --blocks-per-graph` measures the choice), a program per row
    family, built by `warm_up`; prefill stays eager: its matmuls are big enough that dispatch
    costs little, and its shapes vary more."""
    eager = model.run_blocks
    starts = range(0, len(model.layers), blocks_per_graph)
    groups = [_Group(list(model.layers[i : i + blocks_per_graph])) for i in starts]
    programs: dict[tuple[tuple[int, int], int], _Program] = {}  # by row family and blocks

    def run_blocks(x, cos, sin, mask, positions, kv, kv_len):
        family = next((f for f in ROW_FAMILIES if f[0] <= x.shape[0] <= f[1]), None)
        if x.shape[1] != 1 or kv is None or family is None:
            return eager(x, cos, sin, mask, positions, kv, kv_len)
        for start, group in zip(starts, groups, strict=True):
            group_kv = kv[start : start + blocks_per_graph]
            key = (family, len(group.blocks))
            if key not in programs:  # the first call of a family builds it (`warm_up`'s)
                example = (group.weights(), x, cos, sin, mask, positions, group_kv)
                programs[key] = _Program(group, example, family)
            inputs = [*group.weights(), x, cos, sin, mask, positions]
            x = programs[key](inputs + [t for pair in group_kv for t in pair])
        return x

    run_blocks.eager = eager
    model.run_blocks = run_blocks
    model.decode_programs = programs


@contextmanager
def eager(model: Llama) -> Iterator[None]:
    """Within: `model`'s decode steps run its blocks eager, as before `compile_blocks` (the
    reference compiled steps are held to); a model never compiled runs as it does."""
    fast = model.run_blocks
    model.run_blocks = getattr(fast, "eager", fast)
    try:
        yield
    finally:
        model.run_blocks = fast


def warm_up(model: Llama) -> None:
    """Build (or load) the program of each row family, on a scratch cache. Call on the thread
    (and with the torch thread count) that will serve: the C++ loops are built for it."""
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
