"""A circuit breaker for a remote upstream: after `failures` consecutive failures it opens and
requests fail at once with 503 and `Retry-After` for `open_s` seconds, instead of each waiting
out the upstream's timeout and retries; then it lets one probe through (half-open): the probe's
success closes it, its failure opens it again.

Covers: the state machine, on an injectable clock. Does not cover: what a failure is (the
provider decides: unreachable, timed out, 5xx; never a 4xx, which is the caller's fault).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from chatworks.providers.base import ProviderError
from chatworks.telemetry import metrics
from chatworks.telemetry.logging import get_logger

log = get_logger(__name__)


class CircuitBreaker:
    def __init__(self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic):
        self.failures, self.open_s, self._clock = failures, open_s, clock
        self._consecutive = 0
        self._opened_at: float | None = None  # None: closed
        self._probing = False  # half-open: one request is finding out

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._probing else "open"

    def admit(self) -> None:
        """Raises a 503 ProviderError while open; lets one probe through once `open_s` passed."""
        if self._opened_at is None:
            return
        waited = self._clock() - self._opened_at
        if waited >= self.open_s and not self._probing:
            self._probing = True
            return
        retry = max(1, math.ceil(self.open_s - waited)) if waited < self.open_s else 1
        raise ProviderError(
            f"upstream unavailable: {self._consecutive} consecutive failures; retry in {retry} s",
            503, "upstream_circuit_open", retry_after_s=retry,
        )  # fmt: skip

    def succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("upstream_breaker_closed")
        self._consecutive, self._opened_at, self._probing = 0, None, False
        metrics.UPSTREAM_BREAKER_OPEN.set(0)

    def failed(self) -> None:
        self._consecutive += 1
        if self._probing or self._consecutive >= self.failures:
            if self._opened_at is None or self._probing:
                log.warning("upstream_breaker_opened", failures=self._consecutive)
            self._opened_at, self._probing = self._clock(), False
            metrics.UPSTREAM_BREAKER_OPEN.set(1)

    def abandoned(self) -> None:
        """A request that ended without telling (cancelled by its client): if it was the
        probe, the next request probes instead."""
        self._probing = False
