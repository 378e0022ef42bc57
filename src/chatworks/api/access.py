"""Collection access as route dependencies, as scopes are (`api/auth.py`).

A route that names a collection, in its path or its body, declares one of these, and gets a
`CollectionAccess` only when the caller may use that collection: 403 when the key's collection
list leaves it out (or lacks the `documents` scope), 404 when the caller's tenant has no such
collection (another tenant's is "not found" exactly as a missing one, never "forbidden"). The
check runs before the handler and before any retrieval work, and its database lookup runs off
the event loop. Creating routes (`claim`) check only the key: the name may not exist yet, and
who owns it is settled when it is created (409 if another tenant has it).

Each dependency carries `collection_from` ("path" or "body"), read by the access-matrix test
to find every collection-bearing route, so a new one that forgets the check fails there.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, Request

from chatworks.api.auth import authenticate
from chatworks.api.errors import APIError
from chatworks.api.service import Service, get_service
from chatworks.security.principal import Principal
from chatworks.storage import documents as docs


@dataclass(frozen=True)
class CollectionAccess:
    """A collection the caller may use, and the tenant its queries are restricted to."""

    name: str
    owner: str | None  # None: any owner (admins, auth off)


def not_found(name: str) -> APIError:
    return APIError(404, f"collection '{name}' not found", "collection_not_found")


async def string_in_body(request: Request, field: str) -> str | None:
    """A string field of the JSON body, read before the handler (for access checks and
    limits); None when absent or not a string."""
    try:  # the body is parsed (and cached by Starlette) for the handler anyway
        body = await request.json()
    except ValueError:
        return None  # invalid JSON: the handler's validation answers 400
    name = body.get(field) if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


async def checked_collection(
    name: str, principal: Principal, service: Service, *, claim: bool = False
) -> CollectionAccess:
    """The check itself, for a name known to the caller (the dependencies below, and the
    Responses API's file search tool): 403, 404, or the access."""
    principal.require("documents")
    principal.check_collection(name)
    access = CollectionAccess(name, principal.owner_filter)
    if claim:
        return access
    found = await service.db.read(lambda s: docs.collection_id(s, name, access.owner))
    if found is None:
        raise not_found(name)
    return access


Dependency = Callable[..., Coroutine[Any, Any, CollectionAccess | None]]


def collection_access(
    where: Literal["path", "body"], field: str = "collection", *, claim: bool = False
) -> Dependency:
    """A dependency for the collection named by the path parameter `name`, or by `field` of
    the JSON body. In a body the field may be absent (chat completions without `collection`):
    then it gives None and checks nothing."""

    async def check(
        name: str | None, principal: Principal, service: Service
    ) -> CollectionAccess | None:
        if name is None:
            return None
        return await checked_collection(name, principal, service, claim=claim)

    # Two signatures: a path parameter must be declared to appear in the OpenAPI schema.
    async def in_path(
        name: str,
        principal: Principal = Depends(authenticate),
        service: Service = Depends(get_service),
    ) -> CollectionAccess | None:
        return await check(name, principal, service)

    async def in_body(
        request: Request,
        principal: Principal = Depends(authenticate),
        service: Service = Depends(get_service),
    ) -> CollectionAccess | None:
        return await check(await string_in_body(request, field), principal, service)

    dependency = in_path if where == "path" else in_body
    dependency.__name__ = f"{'claimed' if claim else 'visible'}_collection_in_{where}"
    dependency.collection_from = where  # read by the access-matrix test
    return dependency


collection_in_path = collection_access("path")
collection_in_body = collection_access("body")
claimed_in_path = collection_access("path", claim=True)
claimed_in_body = collection_access("body", "name", claim=True)
