"""The auth matrix: every route of the app x (no key, unknown key, revoked, expired, wrong
scope, right scope). Routes come from the app's own route table (`api.app.ROUTERS` and the
app's top-level routes), so a new route cannot escape it: it is either open (and listed as
such here) or answers 401/403 exactly as every other. The scope each route needs is read from
its dependencies, and the OpenAPI schema must say the same."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from chatworks.api.app import ROUTERS, create_app
from chatworks.api.openapi import required_scope
from chatworks.settings import Settings
from tests.e2e.conftest import ADMIN_KEY, create_key

pytestmark = pytest.mark.e2e

# Open on purpose (docs/security/README.md): probes, metrics, the UI and the API docs.
OPEN = {"/healthz", "/readyz", "/metrics", "/", "/docs", "/docs/oauth2-redirect", "/redoc",
        "/openapi.json"}  # fmt: skip
OTHER_SCOPE = {"chat": ["documents"], "documents": ["chat"], "admin": ["chat", "documents"]}


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
            for scope in ("chat", "documents", "admin")}  # fmt: skip
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
