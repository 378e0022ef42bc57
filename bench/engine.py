"""Native engine vs transformers `generate`, same GGUF weights, same process, greedy.

    .venv/bin/python bench/engine.py [--precisions fp32,bf16,int8,int4] [--threads 1]

A precision with `:torch-int4` runs its decode rows on torch's int4 kernel instead of the
integer-dot one (`engine/int4_kernel.py`): `--precisions int4:torch-int4,int4` compares the two,
and prints the ratio of their batch-1 decode rates.

Measures batch-1 decode tokens/s and TTFT (native vs transformers), then aggregate tokens/s and
TTFT p50/p95 with 1/4/8/16 concurrent sequences submitted together to the engine (no HTTP), and
peak RSS. Ratios are against numbers measured in this same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import threading
import time

import torch

from chatworks.engine.precision import load_for_serving
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine, Finish
from chatworks.model import bundled_model_path

os.environ["HF_HUB_OFFLINE"] = "1"
STORY = "The old lighthouse keeper climbed the stairs each night, counting the steps. "


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompt_ids(tokenizer, i: int, n_tokens: int = 200) -> list[int]:
    """~n_tokens of text, different per stream so no two prompts are identical."""
    ids = tokenizer.encode(f"Story {i}. " + STORY * 20)
    return ids[:n_tokens]


def run_streams(engine: Engine, prompts: list[list[int]], new_tokens: int) -> dict[str, float]:
    """Submit all prompts at once; aggregate tokens/s and TTFTs, from submit to last token."""
    params = SamplingParams(max_tokens=new_tokens, temperature=0)
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    counts = [0] * len(prompts)
    finished = threading.Semaphore(0)

    def emitter(i: int):
        def emit(event):
            now = time.perf_counter()
            if isinstance(event, Finish):
                finished.release()
                return
            first.setdefault(i, now)
            last[i] = now
            counts[i] += 1

        return emit

    start = time.perf_counter()
    for i, ids in enumerate(prompts):
        engine.submit(ids, params, emitter(i))
    for _ in prompts:
        finished.acquire()
    wall = max(last.values()) - start
    ttfts = sorted(first[i] - start for i in range(len(prompts)))
    one = 0  # batch-1 decode rate: tokens after the first over the time after the first
    if len(prompts) == 1:
        one = (counts[0] - 1) / (last[0] - first[0])
    return {
        "agg_tps": sum(counts) / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
        "decode_tps": one,
    }


def bench_transformers(ids: list[int], new_tokens: int) -> dict[str, float]:
    from transformers import AutoModelForCausalLM

    path = bundled_model_path()
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    x = torch.tensor([ids])
    kwargs = {"do_sample": False, "min_new_tokens": new_tokens}
    with torch.inference_mode():
        model.generate(x, max_new_tokens=4, do_sample=False)  # warm-up
        t0 = time.perf_counter()
        model.generate(x, max_new_tokens=1, do_sample=False)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(x, max_new_tokens=new_tokens, **kwargs)
        total = time.perf_counter() - t0
    return {"ttft": ttft, "decode_tps": (new_tokens - 1) / (total - ttft)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", default="fp32,bf16,int8,int4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--streams", default="1,4,8,16")
    args = ap.parse_args()
    # Only the engine's thread computes with args.threads (a second OpenMP team on this thread
    # would halve its 2-thread speed; see providers/native.py).
    torch.set_num_threads(1)
    streams = [int(s) for s in args.streams.split(",")]

    rows = []
    for precision in args.precisions.split(","):
        kind, _, kernel = precision.partition(":")
        model, tokenizer = load_for_serving(None, kind, False if kernel == "torch-int4" else None)
        engine = Engine(model, slots=max(streams), threads=args.threads).start()
        run_streams(engine, [prompt_ids(tokenizer, 0)], 4)  # warm-up
        for n in streams:
            result = run_streams(
                engine, [prompt_ids(tokenizer, i) for i in range(n)], args.new_tokens
            )
            rows.append((precision, n, result))
            print(f"native {precision:5s} streams={n:2d} {result}", flush=True)
        engine.stop()
        del engine, model
    native_rss = peak_rss_mb()

    torch.set_num_threads(args.threads)
    base = bench_transformers(prompt_ids(tokenizer, 0), args.new_tokens)
    print(f"transformers batch-1: {base}")

    print(f"\nthreads={args.threads}, prompt=200 tokens, {args.new_tokens} new tokens, greedy")
    print(
        "| engine | streams | aggregate tok/s | batch-1 decode tok/s | vs transformers | "
        "vs own batch-1 | TTFT p50 s | TTFT p95 s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| transformers fp32 | 1 | - | {base['decode_tps']:.1f} | 1.00x | - | "
        f"{base['ttft']:.3f} | {base['ttft']:.3f} |"
    )
    batch1 = {p: r["agg_tps"] for p, n, r in rows if n == 1}
    for p, n, r in rows:
        decode = f"{r['decode_tps']:.1f}" if n == 1 else "-"
        vs_hf = f"{r['decode_tps'] / base['decode_tps']:.2f}x" if n == 1 else "-"
        vs_own = f"{r['agg_tps'] / batch1[p]:.2f}x" if p in batch1 else "-"
        print(
            f"| native {p} | {n} | {r['agg_tps']:.1f} | {decode} | {vs_hf} | {vs_own} | "
            f"{r['ttft_p50']:.3f} | {r['ttft_p95']:.3f} |"
        )
    decode = {p: r["decode_tps"] for p, n, r in rows if n == 1}
    for p, rate in decode.items():
        if f"{p}:torch-int4" in decode:
            ratio = rate / decode[f"{p}:torch-int4"]
            print(f"{p} batch-1 decode, integer-dot / torch's int4 kernel: {ratio:.2f}x")
    print(f"\npeak RSS: native phase {native_rss:.0f} MB; whole run {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
