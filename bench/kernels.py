"""The kernel choices inside the native engine, each against its alternative, same run.

    .venv/bin/python bench/kernels.py [--threads 1]

1. the packed int4 and int8 kernels vs the same quantized weights as a dense matrix, by input
   rows (why `Int4Linear` and `Int8Linear` switch to the dense copy above `MAX_PACKED_ROWS`);
2. the fused SDPA kernel vs `model.llama._cached_attention` over a strided cache slice;
3. one decode step of the default model (int4) by batch size, and prefill of 230 tokens.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

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
        "int8, 49152x576 (the output head)": Int8Linear(nn.Linear(576, 49152, bias=False)),
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


def decode_steps() -> None:
    model, _ = load_for_serving(None, "int4")
    print("\n| int4 model | ms | tokens/s |\n|---|---|---|")
    with torch.inference_mode():
        for batch in (1, 4, 8, 16):
            cache = KVCache(model.cfg, batch, torch.float32, 1024)
            cache.reserve(batch, 301)
            tokens = torch.randint(0, 1000, (batch, 1))
            positions = torch.full((batch, 1), 300)
            ms = per_call_ms(lambda c=cache, t=tokens, p=positions, b=batch: model(
                t, p, kv=c.views(0, b), kv_len=301, last_only=True), repeats=10)  # fmt: skip
            print(f"| decode step, batch {batch} | {ms:.1f} | {batch / ms * 1000:.0f} |")
        cache = KVCache(model.cfg, 1, torch.float32, 1024)
        cache.reserve(1, 230)
        prompt, positions = torch.randint(0, 1000, (1, 230)), torch.arange(230).unsqueeze(0)
        ms = per_call_ms(lambda: model(prompt, positions, kv=cache.views(0, 1), kv_len=230,
                                       last_only=True), repeats=3)  # fmt: skip
        print(f"| prefill, 230 tokens | {ms:.0f} | {230 / ms * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    packed_vs_dense()
    attention()
    decode_steps()


if __name__ == "__main__":
    main()
