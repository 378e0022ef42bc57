"""The rate limiter on Redis, so every replica counts against the same limits.

One Lua script reads every bucket and, only if all admit, counts the request and takes a
parallel slot: Redis runs a script atomically, so two replicas can never both take the last
slot. Parallel slots are a sorted set of lease ids scored by expiry, so a replica that dies
mid-request leaks a slot for `LEASE_TTL_S` at most. The script returns the counts it saw and
`limits.decide` turns them into the verdict and headers, the same code the in-process limiter
runs.

When Redis fails, `fail_open` chooses: serve without limits (and say so in /readyz and
`chatworks_ratelimit_backend_up`), or refuse with 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from chatworks.security.limits import (
    LEASE_TTL_S,
    WINDOW_S,
    Bucket,
    Counts,
    LimiterUnavailable,
    Verdict,
    decide,
    window,
)
from chatworks.telemetry import metrics

# KEYS: per bucket (requests counter, tokens counter, parallel set).
# ARGV: now, lease id, lease ttl, window ttl, then per bucket (rpm, tpm, max_parallel), -1 = none.
# Returns {admitted (0/1), then per bucket: requests, tokens, running} as seen before counting.
_ACQUIRE = """
local now, lease = tonumber(ARGV[1]), ARGV[2]
local lease_ttl, window_ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #KEYS / 3
local seen, admit = {}, 1
for i = 0, n - 1 do
  local requests = tonumber(redis.call('GET', KEYS[3*i+1]) or '0')
  local tokens = tonumber(redis.call('GET', KEYS[3*i+2]) or '0')
  redis.call('ZREMRANGEBYSCORE', KEYS[3*i+3], '-inf', now)
  local running = redis.call('ZCARD', KEYS[3*i+3])
  local rpm, tpm, par = tonumber(ARGV[5+3*i]), tonumber(ARGV[6+3*i]), tonumber(ARGV[7+3*i])
  if (rpm >= 0 and requests >= rpm) or (tpm >= 0 and tokens >= tpm)
      or (par >= 0 and running >= par) then
    admit = 0
  end
  seen[#seen+1], seen[#seen+2], seen[#seen+3] = requests, tokens, running
end
if admit == 1 then
  for i = 0, n - 1 do
    redis.call('INCR', KEYS[3*i+1])
    redis.call('EXPIRE', KEYS[3*i+1], window_ttl)
    redis.call('ZADD', KEYS[3*i+3], now + lease_ttl, lease)
    redis.call('EXPIRE', KEYS[3*i+3], lease_ttl)
  end
end
table.insert(seen, 1, admit)
return seen
"""


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class RedisLimiter:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        fail_open: bool,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 0.5,
    ):
        # Short timeouts: a limiter that hangs would hang every request behind it.
        self._redis = redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._fail_open, self._clock = fail_open, clock
        self._error: str | None = None

    def _keys(self, bucket: Bucket, w: int) -> list[str]:
        # {braces}: the hash tag keeps a bucket's keys in one Redis Cluster slot.
        base = f"chatworks:rl:{{{bucket.name}}}"
        return [f"{base}:r:{w}", f"{base}:t:{w}", f"{base}:p"]

    def _failed(self, exc: Exception) -> None:
        self._error = f"{type(exc).__name__}: {exc}"
        metrics.LIMITER_UP.labels(self.name).set(0)
        action = "allowed" if self._fail_open else "refused"
        metrics.LIMITER_ERRORS.labels(self.name, action).inc()

    def _ok(self) -> None:
        self._error = None
        metrics.LIMITER_UP.labels(self.name).set(1)

    async def acquire(self, buckets: Sequence[Bucket], lease: str) -> Verdict:
        now = self._clock()
        w = window(now)
        keys = [k for b in buckets for k in self._keys(b, w)]
        limits = [_limit(v) for b in buckets for v in (b.rate.rpm, b.rate.tpm, b.rate.max_parallel)]
        try:
            seen = await self._acquire(keys, [now, lease, LEASE_TTL_S, 2 * WINDOW_S, *limits])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            if self._fail_open:
                return Verdict(True)
            raise LimiterUnavailable(self._error) from exc
        self._ok()
        counts = [Counts(*map(int, seen[1 + 3 * i : 4 + 3 * i])) for i in range(len(buckets))]
        verdict = decide(buckets, counts, now)
        # The script decided atomically; `decide` only explains it (same rules, same counts).
        assert verdict.allowed == bool(seen[0]), "Lua and decide() disagree"
        return verdict

    async def release(self, buckets: Sequence[Bucket], lease: str, tokens: int) -> None:
        w = window(self._clock())
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for b in buckets:
                    _, tokens_key, parallel_key = self._keys(b, w)
                    pipe.zrem(parallel_key, lease)
                    if tokens:
                        pipe.incrby(tokens_key, tokens)
                        pipe.expire(tokens_key, 2 * WINDOW_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the slot expires by itself; tokens are lost
            self._failed(exc)
            return
        self._ok()

    async def problem(self) -> str | None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc)
        else:
            self._ok()
        return self._error

    async def close(self) -> None:
        await self._redis.aclose()
