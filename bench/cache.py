"""What the response cache saves: the same question asked again and again, through HTTP with the
`openai` client, to a server with the cache on and one with it off (`CHATWORKS_CACHE=false`).

    .venv/bin/python bench/cache.py [--repeats 20] [--max-tokens 48]

Both servers run the default configuration (native engine, bundled model, extractive grounded
answers) on copies of one small collection. Two requests, each repeated: a plain chat
completion at temperature 0 (the model generates up to --max-tokens tokens), and a grounded one
(`collection`, answered by retrieval and an extractive quote: embedding, search and the
answerability check). Requests alternate between the servers, one at a time, so other load on
the machine weighs on both alike. The first request to the cached server is its miss and is
left out of the cached column (it is in the count of misses); reported are p50 and mean
latency and the ratio uncached / cached, measured in this run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import LiveServer, start_server

MODEL = "smollm2-135m-instruct"
COLLECTION = "bench-cache"
DOC = """# Zephyr project handbook

## Access

The secret code word of the Zephyr project is BLUEBIRD-42. Say it at the front desk.

## Lunch

Lunch in the Zephyr office is served at noon on the third floor.
"""
QUESTION = "When and where is lunch served in the Zephyr office?"


def start(name: str, data: Path, **env: str) -> LiveServer:
    server = start_server(f"bench-cache-{name}", {"CHATWORKS_DATA_DIR": str(data / name), **env})
    r = httpx.post(f"{server.api_url}/collections/{COLLECTION}/documents", timeout=300,
                   files={"file": ("zephyr.md", DOC.encode(), "text/markdown")})  # fmt: skip
    r.raise_for_status()
    return server


def timed(client: openai.OpenAI, grounded: bool, max_tokens: int) -> tuple[float, str]:
    extra = {"collection": COLLECTION} if grounded else {}
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], temperature=0,
        max_tokens=max_tokens, extra_body=extra,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    raw.parse()
    return elapsed, raw.headers.get("x-chatworks-cache", "-")


def row(name: str, off: list[float], on: list[float]) -> str:
    p50_off, p50_on = statistics.median(off), statistics.median(on)
    mean_off, mean_on = statistics.fmean(off), statistics.fmean(on)
    return (f"| {name} | {p50_off * 1000:.1f} | {mean_off * 1000:.1f} | {p50_on * 1000:.1f} | "
            f"{mean_on * 1000:.1f} | {p50_off / p50_on:.0f}x |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        data = Path(tmp)
        servers = {"on": start("on", data), "off": start("off", data, CHATWORKS_CACHE="false")}
        for server in servers.values():
            stack.callback(server.stop)
        clients = {k: openai.OpenAI(base_url=s.api_url, api_key="none", max_retries=0,
                                    timeout=300) for k, s in servers.items()}  # fmt: skip
        print("| request | uncached p50 ms | uncached mean ms | cached p50 ms | cached mean ms "
              "| p50 ratio |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for name, grounded in (("chat, temperature 0", False), ("grounded chat (extract)", True)):
            times: dict[str, list[float]] = {"on": [], "off": []}
            outcomes: dict[str, list[str]] = {"on": [], "off": []}
            for _ in range(args.repeats + 1):  # +1: the cached server's first request, a miss
                for key, client in clients.items():
                    elapsed, outcome = timed(client, grounded, args.max_tokens)
                    times[key].append(elapsed)
                    outcomes[key].append(outcome)
            assert outcomes["on"][0] == "miss" and set(outcomes["on"][1:]) == {"hit"}, outcomes
            assert all(o in ("-", "bypass") for o in outcomes["off"]), outcomes["off"]
            print(row(name, times["off"][1:], times["on"][1:]), flush=True)


if __name__ == "__main__":
    main()
