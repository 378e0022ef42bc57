"""Whether auth is on, and whether it is safe to start at all.

`auto` keeps `make run` keyless on 127.0.0.1 and asks for keys on any other address. A server
on a network address starts only if someone can use it safely: with auth on, some key must
exist (the bootstrap admin key or a stored active one); with auth off, the operator must say
`--insecure`. Refusing at start-up beats a server that is open, or useless, by accident.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from chatworks.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name may resolve to anything: not loopback
        return False


def auth_required(settings: Settings) -> bool:
    if settings.auth == "auto":
        return not is_loopback(settings.host) and not settings.insecure
    return settings.auth == "required"


def exposure_problem(settings: Settings, has_keys: bool) -> str | None:
    """Why serving with these settings would be unsafe, or None."""
    if is_loopback(settings.host) or settings.insecure:
        return None
    if not auth_required(settings):
        return (
            f"auth is off on {settings.host}, a network address: anyone who can reach the port "
            "could use the model and read or delete documents; pass --insecure to do it anyway"
        )
    if not settings.admin_key and not settings.oidc_jwks and not has_keys:
        return (
            f"auth is required on {settings.host} but no key exists: create one with "
            "`chatworks keys create --name admin --scopes admin` or set CHATWORKS_ADMIN_KEY "
            "(or pass --insecure to serve without auth)"
        )
    return None


def keyless_loopback(settings: Settings) -> bool:
    """Auth off on a loopback bind (`make run`): whoever reaches the port is the operator, so
    requests must come from this machine and not from another site's page."""
    return is_loopback(settings.host) and not auth_required(settings)


def _hostname(authority: str) -> str:
    return urlsplit(f"//{authority}").hostname or ""


def foreign_request(host: str | None, origin: str | None) -> str | None:
    """Why a keyless request must be refused, or None. A `Host` that is not a loopback name is
    DNS rebinding (a page on evil.example whose name now resolves to 127.0.0.1: same-origin
    for the browser, so it could read answers). An `Origin` other than the server's own is a
    page on another site sending a "simple" request (a multipart upload needs no CORS
    preflight): it cannot read the answer, but the upload would happen."""
    if host is None or not is_loopback(_hostname(host)):
        return "host_not_allowed"
    if origin is not None and urlsplit(origin).netloc != host:
        return "cross_origin_request"
    return None
