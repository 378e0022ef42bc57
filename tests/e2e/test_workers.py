"""Metrics with several uvicorn workers: whichever worker answers a scrape reports what every
worker counted (prometheus_client's multiprocess mode, telemetry/multiprocess.py)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.servers import start_server

pytestmark = pytest.mark.e2e

ROUTE = "/v1/chat/completions"
REQUESTS = 48


def _served_per_worker(directory) -> dict[str, float]:
    """Chat completions each worker process counted, read from its own samples file."""
    served = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.split("_")[-1]
        values = MmapedDict(str(path), read_mode=True).read_all_values()
        served[pid] = sum(
            value for key, value, _ in values
            if json.loads(key)[1] == "chatworks_http_requests_total"
            and json.loads(key)[2].get("route") == ROUTE
        )  # fmt: skip
    return served


def test_two_workers_report_the_sum_of_both(tmp_path):
    (tmp_path / "script.json").write_text(json.dumps({"delay_s": 0.02, "rules": []}))
    server = start_server("workers", {
        "CHATWORKS_DATA_DIR": str(tmp_path), "CHATWORKS_PROVIDER": "scripted",
        "CHATWORKS_SCRIPT_PATH": str(tmp_path / "script.json"),
    }, ["--workers", "2"])  # fmt: skip
    try:
        body = {"model": "scripted", "messages": [{"role": "user", "content": "a b c d e"}]}

        sent: list[int] = []

        def chat(_: int) -> int:  # a fresh connection each: the kernel picks the worker
            while True:  # /readyz was answered by one worker: the other may still be loading
                status = httpx.post(
                    f"{server.api_url}/chat/completions", json=body, timeout=60
                ).status_code
                sent.append(status)
                if status != 503:
                    return status
                time.sleep(0.5)  # 503 model_loading says retry, as a client would

        with ThreadPoolExecutor(8) as pool:  # concurrent, so one busy worker is not enough
            assert set(pool.map(chat, range(REQUESTS))) == {200}
        # A request is counted just after its response is sent: wait for the last ones.
        deadline = time.monotonic() + 10
        while sum((served := _served_per_worker(tmp_path / "prometheus-multiproc")).values()) \
                < len(sent) and time.monotonic() < deadline:  # fmt: skip
            time.sleep(0.05)
        assert sum(served.values()) == len(sent)  # every answer, 503s included
        assert sum(1 for n in served.values() if n > 0) == 2, served  # both workers served
        for _ in range(4):  # several scrapes, answered by either worker
            total = server.metric("chatworks_http_requests_total", route=ROUTE, method="POST",
                                  status="200")  # fmt: skip
            assert total == REQUESTS
    finally:
        server.stop()
