"""The auth matrix: every route of the app x (no key, unknown key, revoked, expired, wrong
scope, right scope). Routes come from the app's own route table (`api.app.ROUTERS` and the
app's top-level routes), so a new route cannot escape it: it is either open (and listed as
such here) or answers 401/403 exactly as every other. The scope each route needs is read from
its dependencies, and the OpenAPI schema must say the same."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from chatworks.api.app import ROUTERS, create_app
from chatworks.api.openapi import dependency_calls, required_scope
from chatworks.settings import Settings
from tests.e2e.conftest import ADMIN_KEY, create_key

pytestmark = pytest.mark.e2e

# Open on purpose (docs/security/README.md): probes, metrics, the UI and the API docs.
OPEN = {"/healthz", "/readyz", "/metrics", "/", "/docs", "/docs/oauth2-redirect", "/redoc",
        "/openapi.json"}  # fmt: skip
OTHER_SCOPE = {"chat": ["documents"], "documents": ["chat"], "tools": ["chat", "documents"],
               "admin": ["chat", "documents", "tools"]}  # fmt: skip


def _routes() -> list[tuple[str, str, str | None]]:
    app = create_app(Settings(provider="scripted", _env_file=None))
    found = []
    for route in [r for router in ROUTERS for r in router.routes] + app.routes:
        if not isinstance(route, Route):  # the /static mount and the included routers
            continue
        scope = required_scope(route) if isinstance(route, APIRoute) else None
        method = sorted(route.methods - {"HEAD"})[0]
        found.append((method, route.path, scope))
    return sorted(set(found))


ROUTES = _routes()
CASES = ["no key", "unknown key", "revoked", "expired", "wrong scope", "right scope"]


@pytest.fixture(scope="module")
def keys(secured_server) -> dict[str, str]:
    made = {scope: create_key(secured_server, name=f"matrix-{scope}", scopes=[scope])[1]
            for scope in ("chat", "documents", "tools", "admin")}  # fmt: skip
    for scope, others in OTHER_SCOPE.items():
        made[f"not-{scope}"] = create_key(secured_server, name="matrix-other", scopes=others)[1]
    revoked_id, made["revoked"] = create_key(secured_server, name="matrix-revoked",
                                             scopes=["admin"])  # fmt: skip
    httpx.delete(f"{secured_server.api_url}/keys/{revoked_id}", headers={"X-API-Key": ADMIN_KEY})
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    made["expired"] = create_key(secured_server, name="matrix-expired", scopes=["admin"],
                                 expires_at=past)[1]  # fmt: skip
    return made


def test_every_route_is_either_open_or_scoped():
    assert ROUTES, "no routes found"
    for method, path, scope in ROUTES:
        assert (scope is None) == (path in OPEN), f"{method} {path}: scope {scope}"


def test_the_openapi_schema_declares_each_routes_scope_and_auth_errors():
    spec = create_app(Settings(provider="scripted", _env_file=None)).openapi()
    for method, path, scope in ROUTES:
        operation = spec["paths"].get(path, {}).get(method.lower())
        if scope is None:
            continue
        assert operation["security"] == [{"apiKey": [scope]}], path
        assert {"401", "403"} <= set(operation["responses"]), path
        assert "422" not in operation["responses"], path  # invalid input is answered with 400
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_auth_matrix(secured_server, keys, method, path, scope, case):
    key = {"no key": None, "unknown key": "cw-unknown-key", "revoked": keys["revoked"],
           "expired": keys["expired"], "wrong scope": keys.get(f"not-{scope}"),
           "right scope": keys.get(scope)}[case]  # fmt: skip
    url = secured_server.base_url + re.sub(r"\{[^}]+\}", "nothing-here", path)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    status = httpx.request(method, url, headers=headers, timeout=60, **body).status_code
    if scope is None or case == "right scope":
        assert status not in (401, 403), (case, status)
        return
    expected = 403 if case == "wrong scope" else 401
    assert status == expected, (case, status)


# --- collection access: every route that names a collection, x (owner, key limited to other
# collections, another tenant). Found from the route table like the scopes above.


def _names_a_collection(route: APIRoute) -> str | None:
    """Where a route takes a collection's name: "path", "body", or None."""
    if route.path.startswith("/v1/collections/{name}"):
        return "path"
    body = route.body_field.field_info.annotation if route.body_field is not None else None
    fields = set(getattr(body, "model_fields", ()))
    if "collection" in fields or (route.path == "/v1/collections" and "name" in fields):
        return "body"
    return None


def _access_check(route: APIRoute) -> str | None:
    return next((getattr(call, "collection_from", None) for call in dependency_calls(route)
                 if hasattr(call, "collection_from")), None)  # fmt: skip


COLLECTION_ROUTES = sorted(
    (sorted(r.methods)[0], r.path)
    for router in ROUTERS
    for r in router.routes
    if isinstance(r, APIRoute) and _names_a_collection(r)
)


def test_every_route_that_names_a_collection_checks_access_to_it():
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    named = {(r.path, _names_a_collection(r), _access_check(r)) for r in routes}
    assert ("/v1/ask", "body", "body") in named  # the detection finds what it must
    for path, where, checked in named:
        assert where == checked, f"{path}: names a collection in its {where}, checks {checked}"


def _request(method: str, path: str, name: str) -> dict:
    """A valid request to a collection route, naming `name`. A new collection route needs its
    entry here (the KeyError says so)."""
    question = [{"role": "user", "content": "What is the secret code word?"}]
    upload = {"files": {"file": ("note.md", b"# Note\n\nThe gate opens at eight.\n")}}
    return {
        ("GET", "/v1/collections/{name}/documents"): {},
        ("GET", "/v1/collections/{name}/suggestions"): {},
        ("POST", "/v1/collections/{name}/documents"): upload,
        ("DELETE", "/v1/collections/{name}"): {},
        ("POST", "/v1/collections"): {"json": {"name": name}},
        ("POST", "/v1/ask"): {"json": {"question": "What is the gate?", "collection": name}},
        ("POST", "/v1/chat/completions"): {
            "json": {"model": "scripted", "messages": question, "collection": name}
        },
    }[(method, path)]


@pytest.fixture(scope="module")
def tenants_keys(secured_server) -> dict[str, str]:
    owner_id, owner = create_key(secured_server, name="owner", scopes=["chat", "documents"])
    _, limited = create_key(secured_server, name="limited", scopes=["chat", "documents"],
                            owner=owner_id, collections=["elsewhere"])  # fmt: skip
    _, other = create_key(secured_server, name="other", scopes=["chat", "documents"])
    return {"owner": owner, "limited": limited, "other tenant": other}


@pytest.mark.parametrize("case", ["owner", "limited", "other tenant"])
@pytest.mark.parametrize(("method", "path"), COLLECTION_ROUTES)
def test_collection_access_matrix(secured_server, tenants_keys, method, path, case):
    """The owner's key may use its collection; a key of the same owner limited to other
    collections gets 403; another tenant gets what a missing collection gets (404), or 409
    when it tries to claim the name."""
    owner = {"Authorization": f"Bearer {tenants_keys['owner']}"}
    name = f"m-{uuid.uuid4().hex[:8]}"
    made = httpx.post(f"{secured_server.api_url}/collections", json={"name": name}, headers=owner)
    assert made.status_code == 201, made.text
    url = secured_server.base_url + path.replace("{name}", name)
    headers = {"Authorization": f"Bearer {tenants_keys[case]}"}
    r = httpx.request(method, url, headers=headers, timeout=60, **_request(method, path, name))
    claims = path == "/v1/collections" or (path.endswith("/documents") and method == "POST")
    expected = {"owner": {200, 201, 204}, "limited": {403},
                "other tenant": {409} if claims else {404}}[case]  # fmt: skip
    assert r.status_code in expected, (case, r.status_code, r.text)
    if case == "limited":
        assert r.json()["error"]["code"] == "collection_not_allowed"
