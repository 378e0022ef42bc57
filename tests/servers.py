"""Starting real chatworks servers for tests: a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalHTTP:
    """A process serving HTTP on a 127.0.0.1 port, its output in `log_path`."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class LiveServer(LocalHTTP):
    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def metric(self, name: str, **labels: str) -> float:
        """The current value of one Prometheus sample (0 if absent)."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric_name, _, rest = sample.partition("{")
            found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric_name == name and found == want:
                return float(value)
        return 0.0


def start_server(name: str, env: dict[str, str], args: list[str] = (), ready_timeout=600.0):
    """Runs `chatworks serve` and waits until /readyz says ready (the first start converts the
    default model, which takes a while on a busy 2-core machine)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = ARTIFACTS / f"server-{name}-{port}.log"
    full_env = {**os.environ, "CHATWORKS_LOG_LEVEL": "info", **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "chatworks.cli", "serve", "--port", str(port), *args],
        env=full_env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    server = LiveServer(process, port, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server {name} exited:\n" + log_path.read_text()[-3000:])
        try:
            ready = httpx.get(f"{server.base_url}/readyz", timeout=2)
            if ready.status_code == 200:
                return server
            if ready.json().get("status") == "failed":
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"server {name} did not become ready:\n" + log_path.read_text()[-3000:])
