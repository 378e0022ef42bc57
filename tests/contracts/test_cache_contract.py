"""One contract for both response-cache stores: in process and on Redis (a real
redis-server), so replicas sharing Redis see what one process would. Then what only one of
them promises: the in-process LRU bound and TTL (on the test's clock), Redis' expiry, and a
Redis that is down answering a miss instead of failing the request."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from chatworks.cache import MemoryCache, RedisCache, config_fingerprint, open_cache, request_key
from chatworks.settings import Settings
from tests.servers import free_port


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return MemoryCache(max_entries=100, ttl_s=60)
    return RedisCache(request.getfixturevalue("redis_url"), ttl_s=60)


def run(coro):
    return asyncio.run(coro)


def fresh() -> str:
    return request_key(test=uuid.uuid4().hex)


def test_stores_and_returns_bytes(store):
    key, other = fresh(), fresh()

    async def scenario():
        assert await store.get(key) is None
        await store.set(key, b'{"answer": "one"}')
        await store.set(other, b'{"answer": "two"}')
        first, second = await store.get(key), await store.get(other)
        await store.set(key, b'{"answer": "three"}')
        return first, second, await store.get(key)

    assert run(scenario()) == (b'{"answer": "one"}', b'{"answer": "two"}', b'{"answer": "three"}')


def test_key_is_canonical_and_separates_parts():
    a = request_key(owner="a", request={"model": "m", "temperature": 0})
    assert a == request_key(request={"temperature": 0, "model": "m"}, owner="a")
    assert a != request_key(owner="b", request={"model": "m", "temperature": 0})
    assert a != request_key(owner="a", request={"model": "m", "temperature": 0}, version="1")


def test_settings_that_shape_answers_change_the_fingerprint():
    base = Settings(provider="scripted")
    assert config_fingerprint(base) == config_fingerprint(Settings(provider="scripted", port=9))
    assert config_fingerprint(base) != config_fingerprint(
        Settings(provider="scripted", rag_top_k=3)
    )
    assert config_fingerprint(base) != config_fingerprint(Settings(provider="scripted", model="x"))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_cache_is_a_bounded_lru_with_ttl():
    clock = Clock()
    cache = MemoryCache(max_entries=2, ttl_s=10, clock=clock)

    async def scenario():
        await cache.set("a", b"1")
        await cache.set("b", b"2")
        assert await cache.get("a") == b"1"  # now "b" is the least recently used
        await cache.set("c", b"3")
        kept = [await cache.get(k) for k in "abc"]
        clock.now += 10
        return kept, await cache.get("a")

    assert run(scenario()) == ([b"1", None, b"3"], None)


def test_redis_entries_expire(redis_url):
    key = fresh()
    run(RedisCache(redis_url, ttl_s=30).set(key, b"x"))
    ttl = redis.Redis.from_url(redis_url).ttl(f"chatworks:cache:{key}")
    assert 0 < ttl <= 30


def test_redis_down_is_a_miss_not_an_error():
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=30, timeout_s=0.2)

    async def scenario():
        await cache.set("k", b"x")  # dropped, not raised
        return await cache.get("k")

    assert run(scenario()) is None


def test_the_store_follows_the_settings(redis_url):
    assert open_cache(Settings(provider="scripted", cache=False)) is None
    assert isinstance(open_cache(Settings(provider="scripted")), MemoryCache)
    on_redis = open_cache(Settings(provider="scripted", redis_url=redis_url))
    assert isinstance(on_redis, RedisCache)
    run(on_redis.close())
