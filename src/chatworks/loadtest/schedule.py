"""When requests start, in GuideLLM's modes.

- `synchronous`: one request at a time, the next when the last ends (the unloaded latency).
- `concurrent`: N clients, each sending its next request when its last ends (closed loop).
- `constant`: a request every 1/rate seconds, whether or not earlier ones have ended (open loop).
- `poisson`: open loop with exponential gaps at the same mean rate (bursty arrivals).
- `sweep`: synchronous, then concurrent (the most the server gives), then constant rates evenly
  spaced between the two runs' request rates.

Open-loop modes still cap the requests in flight (`--concurrency`), so a stalled server cannot
make the tester itself run out of sockets; arrivals held back by the cap are counted as late.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

MODES = ("synchronous", "concurrent", "constant", "poisson", "sweep")


@dataclass(frozen=True)
class Load:
    """One run's shape: closed loop with `concurrency` clients, or open loop at `rate`/s."""

    mode: str
    concurrency: int = 1
    rate: float | None = None

    @property
    def label(self) -> str:
        if self.mode in ("constant", "poisson"):
            return f"{self.mode} {self.rate:.2f}/s"
        return "synchronous" if self.mode == "synchronous" else f"concurrent {self.concurrency}"


def arrivals(load: Load, seed: int) -> Iterator[float]:
    """Start offsets in seconds from the run's start, for an open-loop load (endless)."""
    if not load.rate or load.rate <= 0:
        raise ValueError(f"{load.mode} needs a rate above 0 (--rate)")
    rng, at, i = random.Random(seed), 0.0, 0
    while True:
        yield at if load.mode == "poisson" else i / load.rate
        at += rng.expovariate(load.rate)
        i += 1


def sweep_rates(low: float, high: float, points: int) -> list[float]:
    """`points` rates evenly spaced strictly between the synchronous and the concurrent run's,
    lowest first. When concurrency did not raise the rate (a server that does not batch, or a
    noisy machine), they lie between the two the other way round, so a sweep always has its
    constant-rate points; none when a run achieved no rate at all."""
    if min(low, high) <= 0:
        return []
    step = (high - low) / (points + 1)
    return sorted(low + step * k for k in range(1, points + 1))
