"""Two replicas of the default model behind HAProxy: conversation affinity vs round robin, and
a sweep of chat on one replica vs two.

    .venv/bin/python bench/replicas.py [--requests 40] [--rounds 1] [--sweep-requests 12]

Two `chatworks serve` processes with the defaults (SmolLM2-135M-Instruct, native engine) and
deploy/haproxy/haproxy.cfg in front, all on 127.0.0.1. Measured with the load kit
(chatworks.loadtest):

1. Multi-turn conversation replays (`--scenario conversation`): 5 conversations under way,
   4 turns each, 2 clients, through HAProxy with affinity (the shipped config) and with round
   robin (CHATWORKS_LB_ROUND_ROBIN). Reported: the replicas' prefix-cache hit rate over the run
   (chatworks_engine_prefix_hit_tokens / _queried_tokens, summed over both) and TTFT p50/p99.
   An odd number of conversations, so that round robin does not send every turn of a
   conversation to the same replica by the accident of arithmetic (turn after turn comes
   `conversations` requests later). Each phase has its own seed: no conversation is warm from
   the phase before. `--rounds N` repeats both phases, the first of them alternating.
2. `--mode sweep` of `chat` on replica 1 alone, then on both through HAProxy
   (`--sweep-requests 0` skips it).

Ratios are affinity / round robin and two / one, from this same run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chatworks.loadtest import report
from chatworks.loadtest.runner import Bounds, Target, run_load, run_sweep
from chatworks.loadtest.schedule import Load
from chatworks.loadtest.workload import Workload
from tests.loadbalancer import start_haproxy
from tests.servers import LiveServer, start_server

MODEL = "smollm2-135m-instruct"
# Counters of the engine, exposed with the _total suffix.
HIT = "chatworks_engine_prefix_hit_tokens_total"
QUERIED = "chatworks_engine_prefix_queried_tokens_total"


def prefix_tokens(replicas: list[LiveServer]) -> tuple[float, float]:
    """(hit, queried) prompt tokens of the prefix caches, summed over the replicas."""
    hit = sum(r.metric(HIT, model=MODEL) for r in replicas)
    return hit, sum(r.metric(QUERIED, model=MODEL) for r in replicas)


def conversations(replicas: list[LiveServer], round_robin: bool, requests: int, seed: int):
    balancer = start_haproxy("bench-rr" if round_robin else "bench-affinity", replicas,
                             round_robin=round_robin)  # fmt: skip
    try:
        workload = Workload("conversation", MODEL, max_tokens=32, prompt_words=60,
                            conversations=5, turns=4, seed=seed)  # fmt: skip
        hit0, queried0 = prefix_tokens(replicas)
        run = asyncio.run(run_load(Target(balancer.api_url, timeout=600), workload,
                                   Load("concurrent", 2), Bounds(requests, 1800)))  # fmt: skip
        hit1, queried1 = prefix_tokens(replicas)
    finally:
        balancer.stop()
    summary = report.summarize(run, report.SLO())
    summary["prefix_hit_rate"] = (hit1 - hit0) / max(queried1 - queried0, 1)
    return summary


def sweep(url: str, requests: int) -> list[dict]:
    workload = Workload("chat", MODEL, max_tokens=32, prompt_words=20, seed=7)
    runs = asyncio.run(run_sweep(Target(url, timeout=600), workload, concurrency=4, points=2,
                                 bounds=Bounds(requests, 600), seed=7))  # fmt: skip
    return [report.summarize(run, report.SLO()) for run in runs]


BALANCES = {"round robin": True, "conversation affinity": False}  # name: round_robin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="per conversation phase")
    parser.add_argument("--rounds", type=int, default=1, help="of both conversation phases")
    parser.add_argument("--sweep-requests", type=int, default=12, help="per sweep run (0: none)")
    args = parser.parse_args()
    phases: list[tuple[int, str, dict]] = []  # (round, balance, summary)
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        replicas = [start_server(f"bench-replica-{n}", {"CHATWORKS_DATA_DIR": f"{tmp}/{n}"})
                    for n in (1, 2)]  # fmt: skip
        try:
            for k in range(args.rounds):
                order = list(BALANCES) if k % 2 == 0 else list(reversed(BALANCES))
                for name in order:
                    seed = len(phases) + 1
                    summary = conversations(replicas, BALANCES[name], args.requests, seed)
                    phases.append((k + 1, name, summary))
            if args.sweep_requests:
                one = sweep(replicas[0].api_url, args.sweep_requests)
                balancer = start_haproxy("bench-sweep", replicas)
                try:
                    two = sweep(balancer.api_url, args.sweep_requests)
                finally:
                    balancer.stop()
        finally:
            for r in replicas:
                r.stop()

    print("\n## Multi-turn conversations, 2 replicas behind HAProxy\n")
    print("| round | balance | ok / sent | prefix-cache hit rate | TTFT p50 ms | TTFT p99 ms |")
    print("|---|---|---|---|---|---|")
    for k, name, s in phases:
        print(f"| {k} | {name} | {s['succeeded']} / {s['requests']} | {s['prefix_hit_rate']:.1%} "
              f"| {s['ttft_ms']['p50']:.0f} | {s['ttft_ms']['p99']:.0f} |")  # fmt: skip
    for k in range(1, args.rounds + 1):
        rr, affinity = (next(s for j, n, s in phases if j == k and n == name) for name in BALANCES)
        hits = affinity["prefix_hit_rate"] / max(rr["prefix_hit_rate"], 1e-9)
        p99 = affinity["ttft_ms"]["p99"] / rr["ttft_ms"]["p99"]
        print(f"round {k}, affinity / round robin: hit rate x{hits:.2f}, TTFT p99 x{p99:.2f}")
    if args.sweep_requests:
        print(report.markdown(one, "chat sweep, one replica (direct)"))
        print(report.markdown(two, "chat sweep, two replicas behind HAProxy"))
        best_one = max(s["requests_per_s"] for s in one)
        best_two = max(s["requests_per_s"] for s in two)
        print(f"two / one, best req/s of the sweep: x{best_two / best_one:.2f}")


if __name__ == "__main__":
    main()
