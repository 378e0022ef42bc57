"""A real HAProxy in front of real chatworks replicas, for tests and benchmarks: the shipped
config (deploy/haproxy/haproxy.cfg) on free 127.0.0.1 ports, filled in through its environment
as `make run-replicas` fills it."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.servers import ARTIFACTS, REPO, LiveServer, LocalHTTP, free_port

CONFIG = REPO / "deploy" / "haproxy" / "haproxy.cfg"


@dataclass
class Balancer(LocalHTTP):
    stats_port: int

    def states(self) -> dict[str, str]:
        """Each replica's state as HAProxy sees it, by server name (r1, r2, ...): UP, DOWN, ..."""
        table = httpx.get(f"http://127.0.0.1:{self.stats_port}/;csv", timeout=10).text
        rows = csv.DictReader(io.StringIO(table.lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "replicas"
                and r["svname"] not in ("FRONTEND", "BACKEND")}  # fmt: skip


def start_haproxy(name: str, replicas: list[LiveServer], round_robin: bool = False,
                  timeout: float = 60.0) -> Balancer:  # fmt: skip
    """HAProxy over `replicas` (named r1, r2, ... in order), once its health checks have found
    every replica ready."""
    exe = shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if exe is None:
        pytest.fail("haproxy is missing: run scripts/system-deps.sh (make test does)")
    port, stats_port = free_port(), free_port()
    env = {**os.environ, "CHATWORKS_LB_BIND": f"127.0.0.1:{port}",
           "CHATWORKS_LB_STATS": f"127.0.0.1:{stats_port}"}  # fmt: skip
    env |= {f"CHATWORKS_REPLICA_{i}": f"127.0.0.1:{r.port}" for i, r in enumerate(replicas, 1)}
    if round_robin:
        env["CHATWORKS_LB_ROUND_ROBIN"] = "1"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"haproxy-{name}-{port}.log"
    process = subprocess.Popen([exe, "-W", "-db", "-f", str(CONFIG)], env=env,
                               stdout=log_path.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    balancer = Balancer(process, port, log_path, stats_port)
    want = {f"r{i}": "UP" for i in range(1, len(replicas) + 1)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited:\n{log_path.read_text()[-3000:]}")
        try:
            if balancer.states() == want:
                return balancer
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    balancer.stop()
    raise RuntimeError(f"replicas never all UP behind haproxy:\n{log_path.read_text()[-3000:]}")
