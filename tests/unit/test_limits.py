"""Limiter arithmetic with a clock the test moves: windows, tokens after the fact, slots in
flight, per-model buckets, the headers; budget periods."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from chatworks.security.budgets import period_of
from chatworks.security.limits import (
    Bucket,
    Counts,
    KeyLimits,
    MemoryLimiter,
    Rate,
    buckets_for,
    decide,
)


class Clock:
    def __init__(self, now: float = 60 * 16_667 + 20.0):  # 20 s into a minute window
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_decide_refuses_the_first_limit_reached_and_reports_the_tightest_bucket():
    key = Bucket("k", Rate(rpm=10, tpm=1000))
    model = Bucket("k:m", Rate(rpm=3))
    verdict = decide([key, model], [Counts(5, 200), Counts(1, 0)], now=60 * 100 + 15)
    assert verdict.allowed
    assert verdict.headers["x-ratelimit-limit-requests"] == "3"  # the model bucket bites first
    assert verdict.headers["x-ratelimit-remaining-requests"] == "1"  # after this request
    assert verdict.headers["x-ratelimit-remaining-tokens"] == "800"
    assert verdict.headers["x-ratelimit-reset-requests"] == "45s"
    refused = decide([key, model], [Counts(5, 200), Counts(3, 0)], now=60 * 100 + 15)
    assert (refused.allowed, refused.reason, refused.retry_after_s) == (False, "requests", 45)
    tokens = decide([key], [Counts(0, 1000)], now=60 * 100 + 59.5)
    assert (tokens.reason, tokens.retry_after_s) == ("tokens", 1)
    busy = decide([Bucket("k", Rate(max_parallel=2))], [Counts(0, 0, 2)], now=0)
    assert (busy.reason, busy.retry_after_s) == ("parallel", 1)


def test_requests_per_minute_reset_with_the_window():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    buckets = [Bucket("k", Rate(rpm=2))]
    assert run(limiter.acquire(buckets, "a")).allowed
    assert run(limiter.acquire(buckets, "b")).allowed
    refused = run(limiter.acquire(buckets, "c"))
    assert not refused.allowed and refused.retry_after_s == 40
    clock.now += 40  # the next minute
    assert run(limiter.acquire(buckets, "d")).allowed


def test_tokens_count_when_the_request_ends_and_block_the_rest_of_the_minute():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    buckets = [Bucket("k", Rate(tpm=100))]
    assert run(limiter.acquire(buckets, "a")).allowed
    assert run(limiter.acquire(buckets, "b")).allowed  # a's tokens are not known yet
    run(limiter.release(buckets, "a", tokens=70))
    run(limiter.release(buckets, "b", tokens=40))  # overshoots: admitted while under
    verdict = run(limiter.acquire(buckets, "c"))
    assert (verdict.allowed, verdict.reason) == (False, "tokens")
    assert verdict.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.now += 60
    assert run(limiter.acquire(buckets, "d")).allowed


def test_parallel_slots_free_on_release_and_refusals_take_none():
    limiter = MemoryLimiter(Clock())
    buckets = [Bucket("k", Rate(max_parallel=1))]
    assert run(limiter.acquire(buckets, "a")).allowed
    assert run(limiter.acquire(buckets, "b")).reason == "parallel"
    run(limiter.release(buckets, "b", 0))  # releasing a refused lease frees nothing
    assert run(limiter.acquire(buckets, "c")).reason == "parallel"
    run(limiter.release(buckets, "a", 0))
    assert run(limiter.acquire(buckets, "d")).allowed


def test_a_refused_request_is_not_counted_in_any_bucket():
    limiter = MemoryLimiter(Clock())
    key = Bucket("k", Rate(rpm=5))
    model = Bucket("k:m", Rate(rpm=1))
    assert run(limiter.acquire([key, model], "a")).allowed
    assert not run(limiter.acquire([key, model], "b")).allowed
    other_model = run(limiter.acquire([key], "c"))  # the key's own count went up once
    assert other_model.headers["x-ratelimit-remaining-requests"] == "3"  # 5 - a - this one


def test_buckets_follow_the_keys_limits():
    limits = KeyLimits(Rate(rpm=5), {"m": Rate(tpm=10)})
    assert [b.name for b in buckets_for("id", limits, "m")] == ["k:id", "k:id:m:m"]
    assert [b.name for b in buckets_for("id", limits, "other")] == ["k:id"]
    assert buckets_for("id", KeyLimits(), "m") == []
    assert KeyLimits.from_json(limits.to_json()) == limits
    assert limits.describe() == "rpm=5 m:tpm=10"


@pytest.mark.parametrize(
    ("now", "period", "label", "left"),
    [
        (datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC), "day", "2026-12-31", 60),
        (datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC), "month", "2026-12", 60),
        (datetime(2027, 2, 1, 0, 0, 0, tzinfo=UTC), "month", "2027-02", 28 * 86400),
    ],
)
def test_budget_periods_are_utc_days_and_months(now, period, label, left):
    assert period_of(now, period) == (label, left)
