"""Cache keys and the two stores (in process, Redis) behind one small protocol.

A store maps a key to the bytes of a response body. It never raises into a request: a store
that fails (Redis down) answers a miss and drops the write, counted in
`chatworks_response_cache_errors_total`, because a cache is an optimisation, never a reason
to fail.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from chatworks.settings import Settings, answer_shaping_fields
from chatworks.telemetry import metrics
from chatworks.telemetry.logging import get_logger

log = get_logger(__name__)


def config_fingerprint(settings: Settings) -> str:
    """A hash of the settings declared as shaping answers (`settings.shaping`): replicas
    sharing one Redis with different values of any of them never share entries."""
    shaping = settings.model_dump(mode="json", include=set(answer_shaping_fields()))
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def request_key(**parts: Any) -> str:
    """The key of a request: a hash of its parts as canonical JSON (sorted keys), so two
    requests that differ only in field order or in defaults left out share one key."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    """A bounded LRU with a TTL, for one process. Only the event loop touches it: no lock."""

    name = "memory"

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max, self._ttl, self._clock = max_entries, ttl_s, clock

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes) -> None:
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)  # the least recently used

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """Entries shared by every replica; Redis expires them (`SET ... EX ttl`) and, configured
    with a `maxmemory-policy` such as allkeys-lru, bounds their memory."""

    name = "redis"

    def __init__(self, url: str, ttl_s: float, timeout_s: float = 0.5):
        # Short timeouts, as the limiter's: a slow cache must cost less than the answer it saves.
        self._redis = redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._ttl = max(1, int(ttl_s))

    @staticmethod
    def _key(key: str) -> str:
        return f"chatworks:cache:{key}"

    def _failed(self, action: str, exc: Exception) -> None:
        metrics.CACHE_ERRORS.labels(self.name, action).inc()
        log.warning("cache_backend_error", backend=self.name, action=action, error=str(exc))

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._redis.get(self._key(key))
        except (RedisError, OSError) as exc:
            self._failed("get", exc)
            return None

    async def set(self, key: str, value: bytes) -> None:
        try:
            await self._redis.set(self._key(key), value, ex=self._ttl)
        except (RedisError, OSError) as exc:
            self._failed("set", exc)

    async def close(self) -> None:
        await self._redis.aclose()


def open_cache(settings: Settings) -> ResponseCache | None:
    """None when `CHATWORKS_CACHE=off`; on Redis when `CHATWORKS_REDIS_URL` is set."""
    if not settings.cache:
        return None
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_ttl_s)
    return MemoryCache(settings.cache_max_entries, settings.cache_ttl_s)
