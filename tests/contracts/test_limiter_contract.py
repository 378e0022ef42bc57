"""One contract for both rate limiters: the in-process one and the Redis one (against a real
redis-server), so replicas sharing Redis limit exactly as one process does. The clock is the
test's: windows and lease expiry move when the test says so."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from chatworks.security.limits import LEASE_TTL_S, Bucket, LimiterUnavailable, MemoryLimiter, Rate
from chatworks.security.limits_redis import RedisLimiter
from tests.servers import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 60 * 1_000_000 + 10.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make(request):
    """make(clock) -> a limiter of the kind under test."""
    if request.param == "memory":
        return MemoryLimiter
    url = request.getfixturevalue("redis_url")
    return lambda clock: RedisLimiter(url, fail_open=False, clock=clock)


def bucket(**rate) -> Bucket:
    return Bucket(f"test-{uuid.uuid4().hex}", Rate(**rate))  # fresh counters per test


def run(coro):
    return asyncio.run(coro)


def test_requests_per_minute(make):
    clock = Clock()
    b = [bucket(rpm=2)]

    async def scenario():
        limiter = make(clock)
        got = [await limiter.acquire(b, str(i)) for i in range(3)]
        clock.now += 60
        got.append(await limiter.acquire(b, "next-minute"))
        await limiter.close()
        return got

    first, second, third, later = run(scenario())
    assert first.allowed and second.allowed and later.allowed
    assert (third.allowed, third.reason, third.retry_after_s) == (False, "requests", 50)
    assert third.headers["x-ratelimit-remaining-requests"] == "0"


def test_tokens_per_minute_and_parallel_slots(make):
    clock = Clock()
    tokens, slots = [bucket(tpm=50)], [bucket(max_parallel=1)]

    async def scenario():
        limiter = make(clock)
        assert (await limiter.acquire(tokens, "a")).allowed
        await limiter.release(tokens, "a", 60)
        over = await limiter.acquire(tokens, "b")
        assert (await limiter.acquire(slots, "c")).allowed
        busy = await limiter.acquire(slots, "d")
        await limiter.release(slots, "c", 0)
        freed = await limiter.acquire(slots, "e")
        await limiter.close()
        return over, busy, freed

    over, busy, freed = run(scenario())
    assert (over.allowed, over.reason) == (False, "tokens")
    assert (busy.allowed, busy.reason) == (False, "parallel")
    assert freed.allowed


def test_all_buckets_or_none(make):
    clock = Clock()
    key, model = bucket(rpm=10), bucket(rpm=1)

    async def scenario():
        limiter = make(clock)
        await limiter.acquire([key, model], "a")
        refused = await limiter.acquire([key, model], "b")
        alone = await limiter.acquire([key], "c")
        await limiter.close()
        return refused, alone

    refused, alone = run(scenario())
    assert not refused.allowed
    assert alone.headers["x-ratelimit-remaining-requests"] == "8"  # a and c counted, not b


def test_a_dead_replicas_slot_expires_in_redis(redis_url):
    clock = Clock()
    slots = [bucket(max_parallel=1)]

    async def scenario():
        limiter = RedisLimiter(redis_url, fail_open=False, clock=clock)
        await limiter.acquire(slots, "crashed")  # never released
        held = await limiter.acquire(slots, "b")
        clock.now += LEASE_TTL_S + 1
        expired = await limiter.acquire(slots, "c")
        await limiter.close()
        return held, expired

    held, expired = run(scenario())
    assert not held.allowed and expired.allowed


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_down_fails_open_or_closed_as_configured(fail_open):
    async def scenario():
        limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", fail_open=fail_open)
        try:
            problem = await limiter.problem()
            if fail_open:
                return problem, await limiter.acquire([bucket(rpm=1)], "a")
            with pytest.raises(LimiterUnavailable):
                await limiter.acquire([bucket(rpm=1)], "a")
            return problem, None
        finally:
            await limiter.close()

    problem, verdict = run(scenario())
    assert problem and "Error" in problem
    if fail_open:
        assert verdict.allowed
