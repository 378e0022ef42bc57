"""What keys and limits cost per request: the same request through a server with auth off, with
a key and in-process limits, and with a key and limits on Redis.

    .venv/bin/python bench/limits.py [--requests 400]

Each configuration is a real server with the scripted provider (no model, no delay), so the
time is the HTTP path itself. Non-streaming chat completions go to the servers in turn, one at
a time, on kept-alive connections (round-robin, so other load on the machine weighs on all
alike); reported are the p50 and mean latency and the overhead against auth off, measured in
this same run. With a key, each request looks the key up in the database
and records its usage after the response; rates take and release a lease (in process or one
Lua script and one pipeline on Redis); a budget adds a read of the period's usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import running_redis
from tests.servers import LiveServer, start_server

ADMIN = "cw-bench-admin-0123456789"
BODY = {"model": "scripted", "messages": [{"role": "user", "content": "hello there"}]}
RATES = {"rpm": 10**9, "tpm": 10**12, "max_parallel": 1000}  # never reached: only the cost
BUDGET = {"budget_tokens": 10**12, "budget_period": "month"}


def start(name: str, data: Path, limits: dict | None, **env: str) -> tuple[LiveServer, str | None]:
    """A scripted server, and a key with `limits` (None: auth off, no key)."""
    script = data / "script.json"
    script.write_text(json.dumps({"rules": []}))
    server = start_server(f"bench-{name}", {
        "CHATWORKS_DATA_DIR": str(data / name), "CHATWORKS_PROVIDER": "scripted",
        "CHATWORKS_SCRIPT_PATH": str(script), "CHATWORKS_ADMIN_KEY": ADMIN,
        "CHATWORKS_AUTH": "off" if limits is None else "required", **env,
    })  # fmt: skip
    if limits is None:
        return server, None
    r = httpx.post(f"{server.api_url}/keys", headers={"X-API-Key": ADMIN},
                   json={"name": "bench", "scopes": ["chat"], **limits})  # fmt: skip
    return server, r.json()["secret"]


def measure(targets: dict[str, tuple[LiveServer, str | None]], n: int) -> dict[str, list[float]]:
    """Round-robin over the servers, one request each in turn, so that whatever else loads the
    machine meanwhile weighs on every configuration alike."""
    clients = {
        name: httpx.Client(base_url=server.base_url, timeout=30,
                           headers={"Authorization": f"Bearer {key}"} if key else {})
        for name, (server, key) in targets.items()
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in targets}
    for i in range(n + 20):
        for name, client in clients.items():
            began = time.perf_counter()
            r = client.post("/v1/chat/completions", json=BODY)
            elapsed = time.perf_counter() - began
            assert r.status_code == 200, r.text
            if i >= 20:  # the first requests warm up connections and caches
                times[name].append(elapsed)
    for client in clients.values():
        client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    n = parser.parse_args().requests
    with contextlib.ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis_url = stack.enter_context(running_redis(data))
        configurations = {
            "auth off": ("off", None, {}),
            "key, no limits": ("key", {}, {}),
            "key + rates in process": ("rates", RATES, {}),
            "key + rates + budget": ("budget", RATES | BUDGET, {}),
            "key + rates on Redis": ("redis", RATES, {"CHATWORKS_REDIS_URL": redis_url}),
        }
        targets = {}
        for label, (name, limits, env) in configurations.items():
            targets[label] = start(name, data, limits, **env)
            stack.callback(targets[label][0].stop)  # at once: a later failure stops it too
        results = measure(targets, n)
    print(f"{n} non-streaming chat completions per configuration, round-robin (scripted provider)")
    report(results, "auth off")


def report(results: dict[str, list[float]], baseline: str) -> None:
    """p50 and mean per configuration, and the p50 overhead against `baseline`."""
    base = statistics.median(results[baseline])
    print(
        f"{'configuration':<26} {'p50 ms':>8} {'mean ms':>8} {'p50 overhead ms':>16} {'x off':>6}"
    )
    for name, times in results.items():
        p50 = statistics.median(times)
        print(f"{name:<26} {p50 * 1e3:8.2f} {statistics.fmean(times) * 1e3:8.2f} "
              f"{(p50 - base) * 1e3:16.2f} {p50 / base:6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
