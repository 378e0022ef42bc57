"""Concurrent streams through the HTTP API: native engine vs the transformers provider.

    .venv/bin/python bench/http_load.py [--concurrency 1,4,8,16] [--max-tokens 128]

For each configuration a real server is started; N clients (the `openai` async client) each
stream one chat completion with a distinct ~200-token prompt, greedy, at the same moment.
Reported per N: aggregate completion tokens/s over the wall time, TTFT p50/p95 and the p95 gap
between a stream's chunks (a stream stalled by other requests' prefills shows up there).
Ratios are against the transformers provider and against native at N=1, from this same run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import REPO, start_server

MODEL = "smollm2-135m-instruct"
TOPICS = ["lighthouses", "volcanoes", "bees", "glaciers", "trains", "owls", "tides", "comets"]


def prompt(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    context = (
        f"Notes {i}: " + f"People have long been curious about {topic} and their history. " * 16
    )
    return f"{context}\nWrite a long, detailed essay about {topic}."


async def one_stream(client: openai.AsyncOpenAI, i: int, max_tokens: int) -> dict:
    start = time.perf_counter()
    arrivals, usage = [], None
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt(i)}], max_tokens=max_tokens,
        temperature=0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
        usage = chunk.usage or usage
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    tokens = usage.completion_tokens if usage else len(arrivals)  # a server may not count
    return {"ttft": arrivals[0] - start, "tokens": tokens, "gaps": gaps}


async def burst(base_url: str, n: int, max_tokens: int) -> dict:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=900) as c:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_stream(c, i, max_tokens) for i in range(n)))
        wall = time.perf_counter() - start
    ttfts = sorted(r["ttft"] for r in results)
    gaps = sorted(g for r in results for g in r["gaps"])
    return {
        "tok_s": sum(r["tokens"] for r in results) / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
        "gap_p95": gaps[round(0.95 * (len(gaps) - 1))] if gaps else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--configs", default="transformers,native-t1,native-t2", help="which servers to run"
    )
    args = parser.parse_args()
    levels = [int(n) for n in args.concurrency.split(",")]
    configs = {
        "transformers": {"CHATWORKS_PROVIDER": "transformers", "CHATWORKS_THREADS": "1"},
        "native-t1": {"CHATWORKS_PROVIDER": "native", "CHATWORKS_THREADS": "1"},
        "native-t2": {"CHATWORKS_PROVIDER": "native", "CHATWORKS_THREADS": "2"},
    }
    common = {
        "CHATWORKS_DATA_DIR": str(REPO / ".test-data"),
        "CHATWORKS_ENGINE_SLOTS": str(max(levels)),
        "CHATWORKS_MAX_WAITING_REQUESTS": str(max(levels)),
        "CHATWORKS_QUEUE_TIMEOUT_S": "900",
    }
    table: dict[str, dict[int, dict]] = {}
    for name in args.configs.split(","):
        server = start_server(f"bench-{name}", {**common, **configs[name]})
        try:
            asyncio.run(burst(server.api_url, 1, 8))  # warm-up
            table[name] = {
                n: asyncio.run(burst(server.api_url, n, args.max_tokens)) for n in levels
            }
        finally:
            server.stop()
        print(f"done: {name}", file=sys.stderr)

    base = table.get("transformers")
    print("| server | streams | aggregate tok/s | vs transformers | vs own 1 stream "
          "| TTFT p50 / p95 (s) | chunk gap p95 (ms) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, rows in table.items():
        for n, r in rows.items():
            vs_tf = f"{r['tok_s'] / base[n]['tok_s']:.2f}x" if base and n in base else "-"
            vs_one = f"{r['tok_s'] / rows[levels[0]]['tok_s']:.2f}x"
            print(
                f"| {name} | {n} | {r['tok_s']:.1f} | {vs_tf} | {vs_one} | "
                f"{r['ttft_p50']:.2f} / {r['ttft_p95']:.2f} | {r['gap_p95'] * 1000:.0f} |"
            )


if __name__ == "__main__":
    main()
