"""Running a load: requests started as the schedule says, bounded in count and time, timed.

Every run stops by itself: no request starts after `requests` have started or `seconds` have
passed, and a request in flight is given at most `timeout` more seconds. A sweep is a series of
such runs. Not covered: which requests (`workload.py`), their timing (`client.py`), the summary
(`report.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from chatworks.evals.client import request_headers
from chatworks.loadtest.client import Result, send
from chatworks.loadtest.schedule import Load, arrivals, sweep_rates
from chatworks.loadtest.workload import Workload

Sender = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    base_url: str  # the API base, ending in /v1
    api_key: str | None = None
    timeout: float = 120.0
    use_cache: bool = False  # by default ask the server not to answer from its response cache

    def client(self, connections: int) -> httpx.AsyncClient:
        headers = request_headers(self.api_key, self.use_cache)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(base_url=self.base_url.rstrip("/") + "/", headers=headers,
                                 timeout=self.timeout, limits=limits)  # fmt: skip


@dataclass(frozen=True)
class Bounds:
    requests: int = 100
    seconds: float = 60.0


@dataclass
class Run:
    load: Load
    results: list[Result] = field(default_factory=list)
    elapsed: float = 0.0
    late: int = 0  # open-loop arrivals that waited for a free slot under the concurrency cap

    @property
    def succeeded(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    @property
    def request_rate(self) -> float:
        """Successful requests per second of the run's wall time."""
        return len(self.succeeded) / self.elapsed if self.elapsed else 0.0


async def run_load(target: Target, workload: Workload, load: Load, bounds: Bounds,
                   seed: int = 0, first: int = 0) -> Run:  # fmt: skip
    """One run; request numbers start at `first` (a sweep's runs send different requests)."""
    run = Run(load)
    async with target.client(max(load.concurrency, 1)) as client:
        started = time.perf_counter()

        async def send_one(i: int) -> None:
            run.results.append(await send(client, workload.call(i), started, target.timeout))

        numbers = range(first, first + bounds.requests)
        deadline = started + bounds.seconds
        if load.mode in ("constant", "poisson"):
            run.late = await _open_loop(send_one, load, numbers, seed, started, deadline)
        else:
            await _closed_loop(send_one, load, numbers, deadline)
        run.elapsed = time.perf_counter() - started
    run.results.sort(key=lambda r: r.start)
    return run


async def _closed_loop(send_one: Sender, load: Load, numbers: range, deadline: float) -> None:
    pending = iter(numbers)

    async def one_client() -> None:
        for i in pending:  # shared: each number is taken by exactly one client
            if time.perf_counter() >= deadline:
                return
            await send_one(i)

    clients = 1 if load.mode == "synchronous" else load.concurrency
    await asyncio.gather(*(one_client() for _ in range(clients)))


async def _open_loop(send_one: Sender, load: Load, numbers: range, seed: int, started: float,
                     deadline: float) -> int:  # fmt: skip
    """Starts each request at its arrival time; returns how many had to wait for a slot."""
    slots, tasks, late = asyncio.Semaphore(load.concurrency), [], 0

    async def one(i: int) -> None:
        try:
            await send_one(i)
        finally:
            slots.release()

    for i, offset in zip(numbers, arrivals(load, seed), strict=False):
        at = started + offset
        if at >= deadline:
            break
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        late += slots.locked()
        await slots.acquire()
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return late


async def run_sweep(target: Target, workload: Workload, concurrency: int, points: int,
                    bounds: Bounds, seed: int = 0,
                    progress: Callable[[Run], None] = lambda run: None) -> list[Run]:  # fmt: skip
    """GuideLLM's sweep: the synchronous rate, the concurrent rate, and `points` constant rates
    between them; each run bounded like a single one."""
    runs: list[Run] = []

    async def measure(load: Load) -> Run:
        first = len(runs) * bounds.requests  # every run sends requests of its own
        runs.append(await run_load(target, workload, load, bounds, seed, first))
        progress(runs[-1])
        return runs[-1]

    low = (await measure(Load("synchronous"))).request_rate
    high = (await measure(Load("concurrent", concurrency))).request_rate
    for rate in sweep_rates(low, high, points):
        await measure(Load("constant", concurrency, rate))
    return runs
