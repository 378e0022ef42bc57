"""Backpressure: a bounded number of running generations and a bounded, time-limited wait queue.

A request beyond both is turned away at once with 503 and `Retry-After`, so an overloaded server
answers quickly instead of piling up work it cannot finish (Ollama's OLLAMA_MAX_QUEUE, vLLM's
waiting queue). Queue time and the running/waiting gauges are measured here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from chatworks.api.errors import APIError
from chatworks.telemetry import metrics


@dataclass
class Ticket:
    """A granted generation slot; `release()` is idempotent so every exit path may call it."""

    gate: AdmissionGate
    admitted_at: float = field(default_factory=time.perf_counter)
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._release()


class AdmissionGate:
    def __init__(
        self,
        model: str,
        max_running: int,
        max_waiting: int,
        queue_timeout_s: float,
        retry_after_s: int,
    ):
        self.model = model
        self.max_running, self.max_waiting = max_running, max_waiting
        self._queue_timeout_s, self._retry_after_s = queue_timeout_s, retry_after_s
        self._slots = asyncio.Semaphore(max_running)
        self.running = self.waiting = 0
        self._publish()

    async def admit(self) -> Ticket:
        arrived = time.perf_counter()
        if self._slots.locked():
            await self._wait_for_slot()
        else:
            await self._slots.acquire()  # a free slot: returns without suspending
        self.running += 1
        self._publish()
        metrics.QUEUE_TIME.labels(self.model).observe(time.perf_counter() - arrived)
        return Ticket(self)

    async def _wait_for_slot(self) -> None:
        if self.waiting >= self.max_waiting:
            raise self._overloaded("queue_full", "the server is at capacity; retry shortly")
        self.waiting += 1
        self._publish()
        try:
            await asyncio.wait_for(self._slots.acquire(), self._queue_timeout_s)
        except TimeoutError:
            raise self._overloaded("queue_timeout", "timed out waiting for a free slot") from None
        finally:
            self.waiting -= 1
            self._publish()

    def _release(self) -> None:
        self.running -= 1
        self._slots.release()
        self._publish()

    def _overloaded(self, reason: str, message: str) -> APIError:
        metrics.REQUESTS_REJECTED.labels(self.model, reason).inc()
        return APIError(503, message, reason, headers={"Retry-After": str(self._retry_after_s)})

    def _publish(self) -> None:
        metrics.REQUESTS_RUNNING.labels(self.model).set(self.running)
        metrics.REQUESTS_WAITING.labels(self.model).set(self.waiting)
