"""The kernel choices inside the native engine, each against its alternative, same run.

    .venv/bin/python bench/kernels.py [--threads 1]

1. the packed int4 and int8 kernels vs the same quantized weights as a dense matrix, by input
   rows (why `Int4Linear` and `Int8Linear` switch to the dense copy above `MAX_PACKED_ROWS`);
2. the fused SDPA kernel vs `model.llama._cached_attention` over a strided cache slice;
3. the int8 output head: the int4 kernel on two 4-bit halves vs torch's int8 kernel;
4. one decode step of the default model (int4) by batch size, eager vs compiled blocks, and
   prefill of 230 tokens;
5. the integer-dot int4 kernel (`engine/int4_kernel.py`) vs torch's int4 kernel, per layer shape
   and for a whole eager decode step, interleaved, median of 5 rounds (the machine is shared);
6. one decode step of the default model with q/k/v and gate/up joined into one matmul each
   (`precision.fuse_projections`, what serves) vs separate calls, by batch size, compiled
   where the engine compiles, interleaved as 5.

    .venv/bin/python bench/kernels.py --blocks-per-graph 1,3,5,6 [--threads 1]

measures only how many blocks to compile into one graph (`compiled.GROUP_BLOCKS`): for each
count, in a fresh process with an empty Inductor cache, the warm-up (compiling every shape) and
the batch-1 decode step, then the warm-up again from the disk cache; eager step as baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from chatworks.engine import compiled, int4_kernel
from chatworks.engine.kv_cache import KVCache
from chatworks.engine.precision import Int4Linear, Int8Linear, load_for_serving
from chatworks.model.llama import _cached_attention


def per_call_ms(fn, repeats: int = 50) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def packed_vs_dense() -> None:
    layers = {
        "int4, 576x1536 (an MLP projection)": Int4Linear.quantize(nn.Linear(576, 1536, bias=False)),
        "int8, 49152x576 (the output head)": Int8Linear.quantize(nn.Linear(576, 49152, bias=False)),
    }
    for name, layer in layers.items():
        dtype = str(layer.dense.dtype).removeprefix("torch.")
        print(f"\n{name}\n\n| rows | packed kernel ms | dense {dtype} ms | packed / dense |")
        print("|---|---|---|---|")
        for rows in (1, 4, 8, 16, 64, 230):
            x = torch.randn(rows, layer.dense.shape[1], dtype=torch.bfloat16)
            packed = per_call_ms(lambda x=x, layer=layer: layer.packed(x), repeats=10)
            dense = per_call_ms(
                lambda x=x, layer=layer: F.linear(x.to(layer.dense.dtype), layer.dense), repeats=10
            )
            print(f"| {rows} | {packed:.3f} | {dense:.3f} | {packed / dense:.2f}x |")


def int8_head_vs_torch_int8() -> None:
    """The output head's 8-bit path (the int4 kernel on two halves of each code) against torch's
    own int8 kernel (one scale per output channel), same shape, same bf16 rows."""
    head = Int8Linear.quantize(nn.Linear(576, 49152, bias=False))
    codes = torch.randint(-127, 128, (49152, 576), dtype=torch.int8)
    scales = torch.rand(49152, dtype=torch.bfloat16)
    print("\n| int8 output head, 49152x576 | rows | two 4-bit halves ms | torch int8 kernel ms |"
          " halves / int8 |\n|---|---|---|---|---|")  # fmt: skip
    for rows in (1, 4):
        x = torch.randn(rows, 576, dtype=torch.bfloat16)
        halves = per_call_ms(lambda x=x: head.packed(x), repeats=20)
        int8 = per_call_ms(lambda x=x: torch._weight_int8pack_mm(x, codes, scales), repeats=20)
        print(f"| | {rows} | {halves:.2f} | {int8:.2f} | {halves / int8:.2f}x |")


def attention() -> None:
    batch, kv_heads, group, dim, capacity, length = 16, 3, 3, 64, 1024, 301
    q = torch.randn(batch, kv_heads, group, dim)
    cache = torch.randn(batch, kv_heads, capacity, dim)
    keys = values = cache[:, :, :length]  # a strided slice, as the engine reads it
    mask = torch.ones(batch, 1, group, length, dtype=torch.bool)
    fused = per_call_ms(lambda: F.scaled_dot_product_attention(q, keys, values, attn_mask=mask))
    plain = per_call_ms(lambda: _cached_attention(q, keys, values, mask))
    print("\n| attention, batch 16, 301 cached keys, fp32 | ms per layer |\n|---|---|")
    print(f"| fused SDPA | {fused:.3f} |\n| plain matmuls | {plain:.3f} |")


def interleaved_ms(fns: list, repeats: int, rounds: int = 5) -> list[tuple[float, float]]:
    """Median per-call (wall ms, process CPU ms) of each of `fns`, timed in turn round after
    round, so load from others on the machine falls on all of them alike. CPU time counts only
    this process's threads, so it moves less than wall time when the machine is shared."""
    times: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, got in zip(fns, times, strict=True):
            cpu = time.process_time()
            wall = per_call_ms(fn, repeats)
            got.append((wall, (time.process_time() - cpu) / (repeats + 3) * 1000))
    return [(statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for t in times]


def _ratio_row(label: str, slow: tuple[float, float], fast: tuple[float, float]) -> str:
    return (f"| {label} | {slow[0]:.3f} | {fast[0]:.3f} | {slow[0] / fast[0]:.2f}x | "
            f"{slow[1]:.3f} | {fast[1]:.3f} | {slow[1] / fast[1]:.2f}x |")  # fmt: skip


HEADER = ("| torch int4 wall ms | integer-dot wall ms | ratio | torch int4 CPU ms | "
          "integer-dot CPU ms | ratio |")  # fmt: skip


def compile_all(models: list) -> None:
    for model in models:
        compiled.compile_blocks(model)
        compiled.warm_up(model)


def decode_step(model, batch: int):
    """One decode step of `batch` rows at position 300 (301 cached), as a call to time."""
    cache = KVCache(model.cfg, batch, torch.float32, 1024)
    cache.reserve(batch, 301)
    tokens, positions = torch.randint(0, 1000, (batch, 1)), torch.full((batch, 1), 300)
    return lambda: model(tokens, positions, kv=cache.views(0, batch), kv_len=301, last_only=True)


def integer_kernel_vs_torch_int4(compile_steps: bool) -> None:
    if not int4_kernel.available():
        print(f"\nno integer-dot kernel: {int4_kernel.unavailable_reason()}")
        return
    path = "AVX-512 VNNI" if int4_kernel.isa() == int4_kernel.AVX512_VNNI else "AVX2"
    print(f"\n| layer ({path}), rows {HEADER}\n|---|---|---|---|---|---|---|")
    shapes = {"q/o proj 576x576": (Int4Linear, 576, 576), "MLP up 576->1536": (Int4Linear, 576,
              1536), "MLP down 1536->576": (Int4Linear, 1536, 576), "k/v 576->192": (Int4Linear,
              576, 192), "int8 head 576->49152": (Int8Linear, 576, 49152)}  # fmt: skip
    for name, (kind, inputs, out) in shapes.items():
        linear = nn.Linear(inputs, out, bias=False)
        old, new = kind.quantize(linear, False), kind.quantize(linear, True)
        for rows in (1, 2, 4):
            x = torch.randn(rows, inputs)
            repeats = 10 if out > 10_000 else 200
            calls = [lambda layer=layer, x=x: layer.packed(x) for layer in (old, new)]
            print(_ratio_row(f"{name}, {rows}", *interleaved_ms(calls, repeats)))
    # Separate projections both ways: the kernels alone (section 6 times joining them).
    models = [load_for_serving(None, "int4", kernel, fuse=False)[0] for kernel in (False, True)]
    if compile_steps:
        compile_all(models)
    how = "compiled" if compile_steps else "eager"
    print(f"\n| int4 model, {how} decode step, batch {HEADER}\n|---|---|---|---|---|---|---|")
    with torch.inference_mode():
        for batch in (1, 2, 4):
            steps = [decode_step(model, batch) for model in models]
            print(_ratio_row(str(batch), *interleaved_ms(steps, repeats=10)))


def fused_vs_separate_projections() -> None:
    if not int4_kernel.available():
        print(f"\nno integer-dot kernel (nothing to join): {int4_kernel.unavailable_reason()}")
        return
    models = [load_for_serving(None, "int4", fuse=fuse)[0] for fuse in (False, True)]
    can_compile = compiled.unavailable_reason(integer_only=True) is None
    if can_compile:
        compile_all(models)
    print(f"\n| int4 model, {'compiled' if can_compile else 'eager'} decode step, batch "
          "| separate wall ms | joined wall ms | ratio | separate CPU ms | joined CPU ms "
          "| ratio |\n|---|---|---|---|---|---|---|")  # fmt: skip
    with torch.inference_mode():
        for batch in (1, 4, 16):
            steps = [decode_step(model, batch) for model in models]
            print(_ratio_row(str(batch), *interleaved_ms(steps, repeats=20)))


def decode_steps() -> None:
    """The default model (int4): one decode step by batch size, eager and with the blocks
    compiled (`engine/compiled.py`, when a C++ compiler is found), and a 230-token prefill."""
    model, _ = load_for_serving(None, "int4")
    can_compile = compiled.unavailable_reason(int4_kernel.available()) is None
    if can_compile:
        compile_all([model])
    print("\n| int4 model | eager ms | compiled ms | eager / compiled |\n|---|---|---|---|")
    with torch.inference_mode():
        for batch in (1, 4, 8, 16):
            step = decode_step(model, batch)
            with compiled.eager(model):
                eager = per_call_ms(step, repeats=10)
            if can_compile:
                fast = per_call_ms(step, repeats=10)
                print(f"| decode step, batch {batch} | {eager:.1f} | {fast:.1f} | "
                      f"{eager / fast:.2f}x |")  # fmt: skip
            else:
                print(f"| decode step, batch {batch} | {eager:.1f} | - | - |")
        cache = KVCache(model.cfg, 1, torch.float32, 1024)
        cache.reserve(1, 230)
        prompt, positions = torch.randint(0, 1000, (1, 230)), torch.arange(230).unsqueeze(0)
        ms = per_call_ms(lambda: model(prompt, positions, kv=cache.views(0, 1), kv_len=230,
                                       last_only=True), repeats=3)  # fmt: skip
        print(f"| prefill, 230 tokens (eager either way) | {ms:.0f} | | |")


def one_grouping(blocks: int) -> None:
    """In this process: warm-up seconds, then batch-1 decode step ms eager and compiled with
    `blocks` to a graph, printed as one line for `blocks_per_graph`."""
    model, _ = load_for_serving(None, "int4")
    compiled.compile_blocks(model, blocks)
    start = time.perf_counter()
    compiled.warm_up(model)
    warm_up_s = time.perf_counter() - start
    with torch.inference_mode():
        step = decode_step(model, 1)
        with compiled.eager(model):
            (eager,) = interleaved_ms([step], repeats=20)
        (fast,) = interleaved_ms([step], repeats=20)
    print(f"{warm_up_s} {eager[0]} {fast[0]}")


def blocks_per_graph(counts: list[int], threads: int) -> None:
    """`one_grouping` per count, twice: with an empty Inductor cache, then from it."""
    print("\n| blocks per graph | warm-up, cold s | warm-up, disk cache s | batch-1 step ms "
          "| eager step ms | eager / compiled |\n|---|---|---|---|---|---|")  # fmt: skip
    for blocks in counts:
        command = [sys.executable, __file__, "--threads", str(threads), "--one-grouping",
                   str(blocks)]  # fmt: skip
        with tempfile.TemporaryDirectory() as cache_dir:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
            runs = [subprocess.run(command, env=env, check=True, capture_output=True, text=True)
                    .stdout.split()[-3:] for _ in ("cold", "cached")]  # fmt: skip
        (cold, _, fast), (cached, eager, _) = ([float(v) for v in run] for run in runs)
        print(f"| {blocks} | {cold:.0f} | {cached:.1f} | {fast:.2f} | {eager:.2f} | "
              f"{eager / fast:.2f}x |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only-integer-kernel", action="store_true", help="only section 5")
    parser.add_argument("--only-fused-projections", action="store_true", help="only section 6")
    parser.add_argument("--blocks-per-graph", help="only this: counts to compare, e.g. 1,3,5,6")
    parser.add_argument("--one-grouping", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one_grouping:
        return one_grouping(args.one_grouping)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    if args.blocks_per_graph:
        return blocks_per_graph([int(n) for n in args.blocks_per_graph.split(",")], args.threads)
    if args.only_fused_projections:
        return fused_vs_separate_projections()
    # Compiled both ways only where torch's int4 kernel may be compiled too (AVX-512 kernels).
    integer_kernel_vs_torch_int4(compile_steps=compiled.unavailable_reason() is None)
    if args.only_integer_kernel:
        return
    packed_vs_dense()
    int8_head_vs_torch_int8()
    attention()
    decode_steps()
    fused_vs_separate_projections()


if __name__ == "__main__":
    main()
