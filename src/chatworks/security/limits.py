"""Per-key rate limits: requests per minute, tokens per minute and requests in flight, for a key
as a whole and for a key on one model. In process by default (`MemoryLimiter`); on Redis when
replicas must share them (`limits_redis.RedisLimiter`). Token budgets per day or month live in
the database instead (`budgets.py`): they must outlive restarts.

Windows are fixed minutes (`floor(now / 60)`), the same arithmetic in Python and in Redis' Lua,
so one decision function (`decide`) explains both. Tokens are only known after a request, so a
request is admitted while its window is under the limit and its tokens are added when it ends:
one request may overshoot, the next one waits (what OpenAI's and LiteLLM's limits do too).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

WINDOW_S = 60
# In-flight leases a dead replica leaves in Redis expire after this (longer than any request).
LEASE_TTL_S = 900


@dataclass(frozen=True)
class Rate:
    """Limits on one counter; None is unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_parallel))


@dataclass(frozen=True)
class KeyLimits:
    key: Rate = Rate()
    models: Mapping[str, Rate] = field(default_factory=dict)  # per key x model
    budget_tokens: int | None = None
    budget_period: Literal["day", "month"] = "month"

    def describe(self) -> str:
        """`rpm=60 tpm=10000 smollm2:rpm=5 budget=100000/day`: one line for listings."""
        parts = [f"{n}={v}" for n, v in asdict(self.key).items() if v is not None]
        for model, rate in self.models.items():
            parts += [f"{model}:{n}={v}" for n, v in asdict(rate).items() if v is not None]
        if self.budget_tokens is not None:
            parts.append(f"budget={self.budget_tokens}/{self.budget_period}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        rates = {m: asdict(r) for m, r in self.models.items()}
        return {**asdict(self.key), "models": rates, "budget_tokens": self.budget_tokens,
                "budget_period": self.budget_period}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyLimits:
        names = ("rpm", "tpm", "max_parallel")
        return cls(
            key=Rate(**{n: data.get(n) for n in names}),
            models={
                m: Rate(**{n: r.get(n) for n in names}) for m, r in data.get("models", {}).items()
            },
            budget_tokens=data.get("budget_tokens"),
            budget_period=data.get("budget_period") or "month",
        )


@dataclass(frozen=True)
class Bucket:
    """One set of counters to check: `k:<key id>` or `k:<key id>:m:<model>`."""

    name: str
    rate: Rate


def buckets_for(key_id: str, limits: KeyLimits, model: str | None) -> list[Bucket]:
    found = [Bucket(f"k:{key_id}", limits.key)] if limits.key else []
    if model is not None and limits.models.get(model):
        found.append(Bucket(f"k:{key_id}:m:{model}", limits.models[model]))
    return found


@dataclass(frozen=True)
class Counts:
    """A bucket's state before this request: requests and tokens in this minute, in flight."""

    requests: int = 0
    tokens: int = 0
    running: int = 0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str | None = None  # "requests", "tokens" or "parallel" when refused
    retry_after_s: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)


def window(now: float) -> int:
    return int(now // WINDOW_S)


def decide(buckets: Sequence[Bucket], counts: Sequence[Counts], now: float) -> Verdict:
    """Admit when every bucket is under every limit. The x-ratelimit-* headers (OpenAI's names)
    describe the bucket with the fewest requests (and tokens) left: the one that bites first."""
    reset_s = max(1, math.ceil(WINDOW_S - now % WINDOW_S))
    refused: tuple[str, int] | None = None
    headers: dict[str, str] = {}
    left_requests = left_tokens = math.inf
    for bucket, c in zip(buckets, counts, strict=True):
        rate = bucket.rate
        if refused is None:
            if rate.rpm is not None and c.requests >= rate.rpm:
                refused = ("requests", reset_s)
            elif rate.tpm is not None and c.tokens >= rate.tpm:
                refused = ("tokens", reset_s)
            elif rate.max_parallel is not None and c.running >= rate.max_parallel:
                refused = ("parallel", 1)  # a slot frees when any request ends: try again soon
        if rate.rpm is not None and rate.rpm - c.requests < left_requests:
            left_requests = rate.rpm - c.requests
            # Remaining after this request, as OpenAI reports it.
            headers |= {"x-ratelimit-limit-requests": str(rate.rpm),
                        "x-ratelimit-remaining-requests": str(max(0, left_requests - 1)),
                        "x-ratelimit-reset-requests": f"{reset_s}s"}  # fmt: skip
        if rate.tpm is not None and rate.tpm - c.tokens < left_tokens:
            left_tokens = rate.tpm - c.tokens
            headers |= {"x-ratelimit-limit-tokens": str(rate.tpm),
                        "x-ratelimit-remaining-tokens": str(max(0, left_tokens)),
                        "x-ratelimit-reset-tokens": f"{reset_s}s"}  # fmt: skip
    if refused is not None:
        return Verdict(False, refused[0], refused[1], headers)
    return Verdict(True, headers=headers)


class Limiter(Protocol):
    name: str  # "memory" or "redis", for /readyz and metrics

    async def acquire(self, buckets: Sequence[Bucket], lease: str) -> Verdict:
        """Check every bucket and, if all admit, count the request and hold a parallel slot."""
        ...

    async def release(self, buckets: Sequence[Bucket], lease: str, tokens: int) -> None:
        """Free the slot and add the request's tokens to this minute's window."""
        ...

    async def problem(self) -> str | None:
        """None when the limiter works, else what is wrong (shown by /readyz)."""
        ...

    async def close(self) -> None: ...


class MemoryLimiter:
    """Counters in this process: exact for one replica, per replica for several.
    Single-threaded by construction (the event loop), so no lock is needed."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._requests: dict[tuple[str, int], int] = {}
        self._tokens: dict[tuple[str, int], int] = {}
        self._running: dict[str, set[str]] = {}

    def _counts(self, bucket: Bucket, w: int) -> Counts:
        return Counts(
            self._requests.get((bucket.name, w), 0),
            self._tokens.get((bucket.name, w), 0),
            len(self._running.get(bucket.name, ())),
        )

    def _forget_before(self, w: int) -> None:
        for table in (self._requests, self._tokens):
            for k in [k for k in table if k[1] < w]:
                del table[k]

    async def acquire(self, buckets: Sequence[Bucket], lease: str) -> Verdict:
        now = self._clock()
        w = window(now)
        self._forget_before(w)
        verdict = decide(buckets, [self._counts(b, w) for b in buckets], now)
        if verdict.allowed:
            for b in buckets:
                self._requests[b.name, w] = self._requests.get((b.name, w), 0) + 1
                self._running.setdefault(b.name, set()).add(lease)
        return verdict

    async def release(self, buckets: Sequence[Bucket], lease: str, tokens: int) -> None:
        w = window(self._clock())
        for b in buckets:
            self._running.get(b.name, set()).discard(lease)
            if tokens:
                self._tokens[b.name, w] = self._tokens.get((b.name, w), 0) + tokens

    async def problem(self) -> str | None:
        return None

    async def close(self) -> None:
        pass


class LimiterUnavailable(Exception):
    """The shared backend failed and the limiter is set to fail closed."""
