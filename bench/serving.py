"""Serving benchmark for the transformers provider: first vs warm start, and TTFT / decode speed
through the HTTP API against the same model driven directly with transformers `generate` (the
baseline, same run). The native engine has its own: bench/engine.py and bench/http_load.py.

    .venv/bin/python bench/serving.py [--requests 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import start_server

MODEL = "smollm2-135m-instruct"
PROMPT = "Explain in detail how a lighthouse works and why it matters to ships."


def timed_start(data_dir: Path, name: str):
    started = time.perf_counter()
    env = {"CHATWORKS_DATA_DIR": str(data_dir), "CHATWORKS_PROVIDER": "transformers"}
    server = start_server(name, env)
    return server, time.perf_counter() - started


def api_runs(base_url: str, requests: int, max_tokens: int) -> list[tuple[float, float]]:
    """(TTFT s, decode tokens/s) per streamed request."""
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    results = []
    for _ in range(requests):
        start = time.perf_counter()
        first = None
        usage = None
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens,
            temperature=0, stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
            usage = chunk.usage or usage
        end = time.perf_counter()
        results.append((first - start, (usage.completion_tokens - 1) / (end - first)))
    return results


def direct_generate(model_dir: Path, max_tokens: int, runs: int) -> float:
    """Baseline: decode tokens/s of transformers generate() on the same weights, no server."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    text = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )
    ids = tok(text, return_tensors="pt")
    speeds = []
    with torch.inference_mode():
        for _ in range(runs):
            start = time.perf_counter()
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
            speeds.append(
                (out.shape[1] - ids["input_ids"].shape[1]) / (time.perf_counter() - start)
            )
    return statistics.median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        server, first_start = timed_start(data_dir, "bench-first")
        server.stop()
        server, warm_start = timed_start(data_dir, "bench-warm")
        try:
            runs = api_runs(server.api_url, args.requests, args.max_tokens)
        finally:
            server.stop()
        model_dir = next((data_dir / "models").iterdir())
        baseline = direct_generate(model_dir, args.max_tokens, runs=3)

    ttfts = sorted(r[0] for r in runs)
    speeds = [r[1] for r in runs]
    api_speed = statistics.median(speeds)
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, python {platform.python_version()}")
    print("| measure | value |")
    print("|---|---|")
    print(f"| first start (GGUF -> safetensors conversion + load) | {first_start:.1f} s |")
    print(f"| warm start (load converted safetensors) | {warm_start:.1f} s |")
    print(f"| warm / first start | {warm_start / first_start:.2f}x |")
    ttft_ms = statistics.median(ttfts) * 1000
    print(f"| TTFT p50 over {len(runs)} requests (API, streamed) | {ttft_ms:.0f} ms |")
    print(f"| decode tokens/s (API, streamed, median) | {api_speed:.1f} |")
    print(f"| decode tokens/s (transformers generate, no server) | {baseline:.1f} |")
    print(f"| API / direct generate | {api_speed / baseline:.2f}x |")


if __name__ == "__main__":
    main()
