"""Whether auth is on, and whether it is safe to start at all.

`auto` keeps `make run` keyless on 127.0.0.1 and asks for keys on any other address. A server
on a network address starts only if someone can use it safely: with auth on, some key must
exist (the bootstrap admin key or a stored active one); with auth off, the operator must say
`--insecure`. Refusing at start-up beats a server that is open, or useless, by accident.
"""

from __future__ import annotations

import ipaddress

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
