"""The response cache: exact-match answers to deterministic requests (docs/security/README.md).

Covers: the cache key (a hash of the normalized request, the caller's tenant, the collection's
version and the settings that shape an answer) and two stores with one contract, in process
(bounded LRU with a TTL) and on Redis (shared by replicas). Does not cover: HTTP. Which
requests are cacheable, serving a hit and storing a miss live in `chatworks.api.cache`.
"""

from chatworks.cache.store import (
    MemoryCache,
    RedisCache,
    ResponseCache,
    config_fingerprint,
    open_cache,
    request_key,
)

__all__ = [
    "MemoryCache",
    "RedisCache",
    "ResponseCache",
    "config_fingerprint",
    "open_cache",
    "request_key",
]
