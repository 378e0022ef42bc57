"""Soak: does a server drift over a long steady load? `chatworks serve` with the default model
under a constant-rate load from the load kit (chatworks.loadtest), one window a minute; after
each window the server's RSS and open file descriptors (from /proc) and that minute's TTFT and
end-to-end p50/p99. At the end, drift: the first 5 minutes against the last 5 (the baseline is
the same run's start), and errors by status over the whole run.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 0.4] [--scenario mix]

Bounded: no request starts after `--minutes`; each is abandoned after `--timeout` s. The mix
scenario's /v1/ask questions go to a collection of this repository's README and docs, ingested
first through the API. Prints a Markdown table (the text docs/benchmarks.md quotes) and writes
every sample to --out as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chatworks.evals.metrics import percentile
from chatworks.loadtest.client import Result
from chatworks.loadtest.report import SLO, summarize
from chatworks.loadtest.runner import Bounds, Target, run_load
from chatworks.loadtest.schedule import Load
from chatworks.loadtest.workload import Workload
from tests.servers import REPO, start_server

COLLECTION = "soak-docs"
WINDOW_S = 60.0
EDGE = 5  # minutes compared at each end
DOCS = (REPO / "README.md", REPO / "docs/operations/slo.md", REPO / "docs/benchmarks.md")


def ingest(api: str, collection: str, files=DOCS) -> None:
    """A small collection for /v1/ask, uploaded the way a user would."""
    httpx.post(f"{api}/collections", json={"name": collection}, timeout=60)
    for path in files:
        upload = {"file": (path.name, path.read_bytes(), "text/markdown")}
        httpx.post(f"{api}/collections/{collection}/documents", files=upload,
                   timeout=600).raise_for_status()  # fmt: skip


def process_sample(pid: int) -> dict[str, float]:
    """Resident memory (MB) and open file descriptors of one process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return {"rss_mb": rss_kb / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def spread(results: list[Result]) -> dict[str, float | None]:
    ok = [r for r in results if r.ok]
    ttft = [r.ttft * 1000 for r in ok if r.ttft is not None]
    e2e = [r.latency * 1000 for r in ok]
    return {"ttft_p50": percentile(ttft, 50), "ttft_p99": percentile(ttft, 99),
            "e2e_p50": percentile(e2e, 50), "e2e_p99": percentile(e2e, 99)}  # fmt: skip


def soak(api: str, pid: int, workload: Workload, load: Load, minutes: int, timeout: float):
    target, samples = Target(api, timeout=timeout), []
    for minute in range(minutes):
        bounds = Bounds(requests=100_000, seconds=WINDOW_S)
        run = asyncio.run(run_load(target, workload, load, bounds, first=minute * 100_000))
        summary = summarize(run, SLO())
        sample = {"minute": minute + 1, "sent": summary["requests"], "ok": summary["succeeded"],
                  "errors": summary["errors"], **process_sample(pid), **spread(run.results),
                  "results": run.results}  # fmt: skip
        samples.append(sample)
        print(row(sample), flush=True)
    return samples


HEADER = ("| minute | ok / sent | RSS MB | fds | TTFT p50 / p99 ms | e2e p50 / p99 ms | errors |\n"
          "|---|---|---|---|---|---|---|")  # fmt: skip


def row(s: dict) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items())) or "none"
    return (f"| {s['minute']} | {s['ok']} / {s['sent']} | {s['rss_mb']:.0f} | {s['fds']} "
            f"| {_ms(s['ttft_p50'])} / {_ms(s['ttft_p99'])} "
            f"| {_ms(s['e2e_p50'])} / {_ms(s['e2e_p99'])} | {errors} |")  # fmt: skip


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def drift(samples: list[dict]) -> dict:
    """The first EDGE minutes against the last EDGE: memory (mean RSS) and pooled latency."""
    edge = min(EDGE, len(samples) // 2) or 1
    first, last = samples[:edge], samples[-edge:]

    def window(part: list[dict]) -> dict:
        results = [r for s in part for r in s["results"]]
        return {"rss_mb": sum(s["rss_mb"] for s in part) / len(part),
                "fds": max(s["fds"] for s in part), **spread(results)}  # fmt: skip

    a, b = window(first), window(last)
    errors: dict[str, int] = {}
    for s in samples:
        for outcome, n in s["errors"].items():
            errors[outcome] = errors.get(outcome, 0) + n
    return {"minutes_compared": edge, "first": a, "last": b,
            "rss_growth_mb": b["rss_mb"] - a["rss_mb"],
            "rss_growth_pct": 100 * (b["rss_mb"] / a["rss_mb"] - 1),
            "ratios_last_over_first": {k: b[k] / a[k] for k in a if k.endswith(("p50", "p99"))
                                       and a[k] and b[k] is not None},
            "sent": sum(s["sent"] for s in samples), "ok": sum(s["ok"] for s in samples),
            "errors": errors}  # fmt: skip


def report(d: dict) -> str:
    a, b, n = d["first"], d["last"], d["minutes_compared"]
    lines = [f"Drift, first {n} min vs last {n} min:",
             f"- RSS (mean): {a['rss_mb']:.0f} MB -> {b['rss_mb']:.0f} MB "
             f"({d['rss_growth_mb']:+.1f} MB, {d['rss_growth_pct']:+.1f}%); "
             f"open fds (max): {a['fds']} -> {b['fds']}"]  # fmt: skip
    for key, ratio in d["ratios_last_over_first"].items():
        lines.append(f"- {key}: {_ms(a[key])} ms -> {_ms(b[key])} ms (x{ratio:.2f})")
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(d["errors"].items())) or "none"
    lines.append(f"- requests: {d['ok']} / {d['sent']} ok; errors by status: {errors}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--rate", type=float, default=0.4, help="requests/s, constant")
    parser.add_argument("--concurrency", type=int, default=4, help="most in flight")
    parser.add_argument("--scenario", default="mix", help="a load-kit scenario")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("runs/soak.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soak-") as data:
        server = start_server("soak", {"CHATWORKS_DATA_DIR": data})
        try:
            if args.scenario in ("ask", "mix"):
                ingest(server.api_url, COLLECTION)
            model = httpx.get(f"{server.api_url}/models").json()["data"][0]["id"]
            workload = Workload(args.scenario, model, max_tokens=args.max_tokens,
                                collection=COLLECTION)  # fmt: skip
            load = Load("constant", args.concurrency, args.rate)
            print(f"soak: {args.minutes} min of {args.scenario} at {load.label} "
                  f"(max_tokens {args.max_tokens}, model {model}), server pid "
                  f"{server.process.pid}\n\n{HEADER}", flush=True)  # fmt: skip
            samples = soak(server.api_url, server.process.pid, workload, load, args.minutes,
                           args.timeout)  # fmt: skip
        finally:
            server.stop()
    result = drift(samples)
    print("\n" + report(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = [{k: v for k, v in s.items() if k != "results"} for s in samples]
    args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                    "minutes": kept, "drift": result}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
