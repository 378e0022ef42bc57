"""The response cache in the API: a dependency decides, after auth and limits, whether a
request is cacheable and serves a hit; `CacheWriter` (ASGI) stores a miss's response.

What is cached: non-streaming chat completions with `temperature: 0` (greedy decoding gives
the same answer to the same request) and non-streaming `/v1/ask` with `temperature: 0` (its
default), keyed per collection version, so ingesting or deleting a document invalidates the
collection's entries. Everything else passes by (`x-chatworks-cache: bypass`), as does a
request with `Cache-Control: no-store`; `Cache-Control: no-cache` gets a fresh answer, stored.

Decisions (docs/security/README.md, "Response cache"):
- Streams bypass the cache, both ways: replaying an answer as one event would change what a
  stream promises (text as it is written) and storing one means re-assembling its events.
- A hit is still a request: auth, scopes, the key's model and collection lists, rpm and the
  parallel slot all apply (the dependency runs after `quota`). It costs no tokens (tpm and
  budgets): nothing was generated. Its body keeps the original `usage` (what the answer cost)
  with a fresh `id` and `created`.
- Tenants never share an entry: the key holds the caller's owner, and a grounded request's
  collection is checked against that owner (the route's access dependency) before the lookup.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from chatworks.api.access import CollectionAccess, collection_in_body
from chatworks.api.auth import require
from chatworks.api.grounded import collection_version
from chatworks.api.middleware import HttpMiddleware
from chatworks.api.quota import Lease, ask_quota, chat_quota
from chatworks.api.schemas import AskRequest, ChatCompletionRequest
from chatworks.api.service import Service, get_service
from chatworks.cache import request_key
from chatworks.security.principal import Principal
from chatworks.telemetry import metrics

HEADER = "x-chatworks-cache"
# Fields that do not change the answer: how it is delivered, and who the client says it is.
_DELIVERY = {"stream", "stream_options", "user"}


class CacheHit(Exception):
    """Raised by the dependency to answer from the cache instead of running the handler."""

    def __init__(self, body: bytes):
        self.body = body


def hit_response(_: Request, hit: CacheHit) -> Response:
    """The stored body with a fresh `id` and `created`: two completions never share an id."""
    data = json.loads(hit.body)
    if "id" in data:
        data["id"] = f"{data['id'].split('-', 1)[0]}-{uuid.uuid4().hex}"
        data["created"] = int(time.time())
    return Response(json.dumps(data), media_type="application/json", headers={HEADER: "hit"})


KeyOf = Callable[[Request, Service, Principal, CollectionAccess | None],
                Coroutine[Any, Any, str | None]]  # fmt: skip


def keyed(route: str, schema: type[ChatCompletionRequest | AskRequest]) -> KeyOf:
    """The key of a request to `route` whose body is `schema`, or None if not cacheable."""

    async def key_of(
        request: Request, service: Service, principal: Principal,
        collection: CollectionAccess | None,
    ) -> str | None:  # fmt: skip
        body = schema.model_validate(await request.json())
        if body.stream or body.temperature != 0:
            return None
        version = None
        if collection is not None:  # grounded: the answer depends on the collection's documents
            version = await collection_version(service, collection)
        return request_key(
            route=route, owner=principal.owner, config=service.cache_config, version=version,
            request=body.model_dump(mode="json", exclude=_DELIVERY),
        )  # fmt: skip

    return key_of


def cached(
    scope: str, quota: Callable[..., Any], access: Callable[..., Any], key_of: KeyOf
) -> Callable[..., Any]:
    """A route dependency: after auth (`scope`), limits (`quota`) and the route's collection
    access check (`access`), answer from the cache, or mark the request so `CacheWriter`
    stores its response."""

    async def dependency(
        request: Request,
        principal: Principal = Depends(require(scope)),
        _: Lease = Depends(quota),
        collection: CollectionAccess | None = Depends(access),
        service: Service = Depends(get_service),
    ) -> None:
        route = request.scope["route"].path
        if service.cache is None:
            return
        try:
            key = await key_of(request, service, principal, collection)
        except (ValueError, ValidationError):  # invalid JSON or body: the handler answers 400
            key = None
        state = request.scope.setdefault("state", {})
        # HTTP's request directives: no-cache asks for a fresh answer (which is then stored),
        # no-store for one that is neither served from nor kept in the cache.
        directives = request.headers.get("cache-control", "").lower()
        if key is None or "no-store" in directives:
            metrics.CACHE_REQUESTS.labels(route, "bypass").inc()
            state["cache"] = ("bypass", None)
            return
        found = None if "no-cache" in directives else await service.cache.get(key)
        if found is not None:
            metrics.CACHE_REQUESTS.labels(route, "hit").inc()
            raise CacheHit(found)
        metrics.CACHE_REQUESTS.labels(route, "miss").inc()
        state["cache"] = ("miss", key)

    dependency.__name__ = f"cached_{scope}"
    return dependency


cached_chat = Depends(
    cached("chat", chat_quota, collection_in_body, keyed("chat", ChatCompletionRequest))
)
cached_ask = Depends(cached("documents", ask_quota, collection_in_body, keyed("ask", AskRequest)))


class CacheWriter(HttpMiddleware):
    """Adds `x-chatworks-cache` to the responses of cacheable routes and stores a miss's
    response when it is a complete 200 JSON body."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})
        parts: list[bytes] = []
        storing = False

        async def send_and_keep(message: Message) -> None:
            nonlocal storing
            outcome, key = state.get("cache", (None, None))
            if message["type"] == "http.response.start" and outcome is not None:
                message["headers"] = [*message.get("headers", []),
                                      (HEADER.encode(), outcome.encode())]  # fmt: skip
                content_type = dict(message["headers"]).get(b"content-type", b"")
                storing = (key is not None and message["status"] == 200
                           and content_type.startswith(b"application/json"))  # fmt: skip
                await send(message)
                return
            if message["type"] == "http.response.body" and storing:
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    storing = False
                    await send(message)  # the client first, then the store
                    await scope["app"].state.service.cache.set(key, b"".join(parts))
                    return
            await send(message)

        await self.app(scope, receive, send_and_keep)
