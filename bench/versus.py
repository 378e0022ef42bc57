"""chatworks against llama.cpp's llama-server (and transformers), same GGUF, through HTTP.

    bash scripts/build-llama-server.sh      # once, ~15 min; prints the binary's path
    .venv/bin/python bench/versus.py [--threads 1,2] [--streams 1,4,16,32] [--transformers]

Every server gets the bundled SmolLM2-135M-Instruct Q4_1 file, the same number of threads and
the same prompts, and is asked with the `openai` async client, greedy:
- one stream of 128 tokens: time to first token; decode tokens/s after the first token, the
  best of three streams with distinct prompts;
- N streams at once: aggregate completion tokens/s and TTFT p95 (`bench/http_load.py`);
- one ~1,000-token prompt (README text, a RAG-sized context) with max_tokens=1: prompt
  tokens/s = prompt tokens / time to first token. Each server gets a prompt it has not seen
  (llama-server caches prompts); then that conversation's next turn (the reply and a short
  question added), whose time to one token shows whether the first turn is recomputed.
Also, in this process, the same 128-token stream straight on chatworks' engine (no HTTP), so the
table shows what HTTP costs: HTTP batch-1 decode / engine batch-1 decode.
Prints one table per thread count with chatworks / llama-server ratios. Skips llama-server
with a message when it is not built (LLAMA_SERVER=path overrides where it is looked for).
chatworks decodes on its integer-dot int4 kernel where it builds; with
CHATWORKS_ENGINE_INT4_KERNEL=false in the environment, both its server and the in-process
engine use torch's int4 kernel instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import torch
from engine import run_streams
from http_load import MODEL, REPO, burst, one_stream, prompt

from chatworks.engine import compiled
from chatworks.engine.precision import load_for_serving
from chatworks.engine.scheduler import Engine
from chatworks.model import bundled_model_path
from chatworks.settings import Settings
from tests.servers import free_port, start_server

LLAMA_SERVER = Path(
    os.environ.get(
        "LLAMA_SERVER", Path.home() / ".cache/chatworks/llama.cpp/build/bin/llama-server"
    )
)


@contextmanager
def chatworks(threads: int, slots: int, provider: str = "native"):
    server = start_server(f"versus-{provider}-t{threads}", {
        "CHATWORKS_PROVIDER": provider, "CHATWORKS_THREADS": str(threads),
        "CHATWORKS_DATA_DIR": str(REPO / ".test-data"),
        "CHATWORKS_ENGINE_SLOTS": str(slots), "CHATWORKS_MAX_WAITING_REQUESTS": str(slots),
        "CHATWORKS_QUEUE_TIMEOUT_S": "900",
    })  # fmt: skip
    try:
        yield server.api_url
    finally:
        server.stop()


@contextmanager
def llama_server(threads: int, slots: int):
    port = free_port()
    log = open(REPO / "tests" / "artifacts" / f"versus-llama-t{threads}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [str(LLAMA_SERVER), "-m", str(bundled_model_path()), "--host", "127.0.0.1",
         "--port", str(port), "-np", str(slots), "-c", str(2048 * slots),
         "-t", str(threads), "-tb", str(threads), "--jinja", "--no-webui"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _healthy(f"http://127.0.0.1:{port}/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not start: see {log.name}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def long_prompt(tag: str) -> str:
    words = (REPO / "README.md").read_text().split()[:700]  # ~1,000 SmolLM2 tokens
    return f"[{tag}] Answer from these notes.\n" + " ".join(words) + "\nWhat does make run do?"


async def measure(base_url: str, streams: list[int], tag: str) -> dict:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=900) as c:
        await one_stream(c, 0, 8)  # warm-up
        single = await one_stream(c, 1, 128)
        # Decode speed: the best of three streams (distinct prompts: no prompt cache helps).
        decodes = [single] + [await one_stream(c, i, 128) for i in (9, 17)]
        chat = [{"role": "user", "content": long_prompt(tag)}]
        start = time.perf_counter()
        reply = await c.chat.completions.create(
            model=MODEL, messages=chat, max_tokens=1, temperature=0
        )
        prefill_s = time.perf_counter() - start
        # The conversation's next turn: a server that keeps the first turn's keys and values
        # prefills only the new message.
        chat += [{"role": "assistant", "content": reply.choices[0].message.content},
                 {"role": "user", "content": "And what does make test do?"}]  # fmt: skip
        start = time.perf_counter()
        await c.chat.completions.create(model=MODEL, messages=chat, max_tokens=1, temperature=0)
        next_turn_s = time.perf_counter() - start
    out = {
        "ttft_1": single["ttft"],
        "decode_1": max((run["tokens"] - 1) / sum(run["gaps"]) for run in decodes),
        "prompt_tok_s": reply.usage.prompt_tokens / prefill_s,
        "next_turn_ms": next_turn_s * 1000,
    }
    for n in streams:
        out[n] = await burst(base_url, n, 128)
    return out


def engine_decode(threads: int, rounds: int = 3) -> float:
    """Batch-1 decode tokens/s of the default serving setup (int4, compiled where a C++ compiler
    is found) on the engine itself, for the
    prompt `one_stream(..., 1, 128)` sends: the best of `rounds`."""
    torch.set_num_threads(1)  # as the server: only the engine's thread uses `threads`
    model, tokenizer = load_for_serving(None, "int4", Settings().engine_int4_kernel)
    chat = [{"role": "user", "content": prompt(1)}]
    ids = tokenizer.encode(tokenizer.apply_chat_template(chat, add_generation_prompt=True))
    can_compile = compiled.unavailable_reason(compiled.integer_only(model)) is None
    engine = Engine(model, slots=1, threads=threads, prefix_cache_mb=0, compile=can_compile).start()
    try:
        return max(run_streams(engine, [ids], 128)["decode_tps"] for _ in range(rounds))
    finally:
        engine.stop()


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--streams", default="4,16,32")
    ap.add_argument("--transformers", action="store_true", help="also the transformers provider")
    args = ap.parse_args()
    streams = [int(n) for n in args.streams.split(",")]
    slots = max(streams)
    if not LLAMA_SERVER.exists():
        print(f"llama-server not found at {LLAMA_SERVER}: run scripts/build-llama-server.sh "
              "(or set LLAMA_SERVER); measuring chatworks alone", file=sys.stderr)  # fmt: skip
    for threads in (int(t) for t in args.threads.split(",")):
        servers = {"chatworks": lambda t=threads: chatworks(t, slots)}
        if LLAMA_SERVER.exists():
            servers["llama-server"] = lambda t=threads: llama_server(t, slots)
        if args.transformers:
            servers["transformers"] = lambda t=threads: chatworks(t, slots, "transformers")
        results = {}
        for name, server in servers.items():
            with server() as url:
                results[name] = asyncio.run(measure(url, streams, f"{name}-{threads}"))
            print(f"done: {name}, {threads} thread(s)", file=sys.stderr)
        engine_tok_s = engine_decode(threads)
        ours, theirs = results["chatworks"], results.get("llama-server")
        print(f"\n{threads} thread(s): chatworks / llama-server (higher is better unless noted)\n")
        print("| measure | " + " | ".join(results) + " | chatworks / llama-server |")
        print("|---|" + "---|" * (len(results) + 1))
        rows = [("batch-1 decode tok/s", lambda r: r["decode_1"]),
                ("TTFT at 1 stream, ms (lower is better)", lambda r: r["ttft_1"] * 1000),
                ("prompt tok/s, ~1,000-token prompt", lambda r: r["prompt_tok_s"]),
                ("its next turn: time to 1 token, ms (lower is better)",
                 lambda r: r["next_turn_ms"])]  # fmt: skip
        for n in streams:
            rows.append((f"aggregate tok/s, {n} streams", lambda r, n=n: r[n]["tok_s"]))
            rows.append(
                (f"TTFT p95 at {n} streams, s (lower is better)", lambda r, n=n: r[n]["ttft_p95"])
            )
        for label, get in rows:
            cells = " | ".join(f"{get(r):.2f}" for r in results.values())
            versus = ratio(get(ours), get(theirs)) if theirs else "-"
            print(f"| {label} | {cells} | {versus} |")
        http_tok_s = ours["decode_1"]
        print(f"\nchatworks batch-1 decode: HTTP {http_tok_s:.2f} tok/s, engine {engine_tok_s:.2f}"
              f" tok/s: HTTP / engine {ratio(http_tok_s, engine_tok_s)}")  # fmt: skip


if __name__ == "__main__":
    main()
