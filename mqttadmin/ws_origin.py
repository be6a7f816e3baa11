"""The WebSocket origin check: a socket is accepted only from the portal's own
pages.

Browsers send cookies with a WebSocket handshake from any page, so the session
alone does not prove the page is ours. As Django's CSRF check does for unsafe
requests, the `Origin` must equal the portal's own origin, scheme, host and port:
`http(s)://<Host header>`, the scheme from the connection (`wss` or, behind a
proxy, SECURE_PROXY_SSL_HEADER), the Host one of ALLOWED_HOSTS. CSRF_TRUSTED_ORIGINS
are accepted too. Another port on the same host is another origin (another
program, possibly the attacker's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http import HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.http import is_same_domain

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _is_secure(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        # Django names it as a META key (HTTP_X_FORWARDED_PROTO).
        meta_name, secure_value = proxy_header
        wanted = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        value = _header(scope, wanted)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return False


def _own_origin(scope: dict[str, Any]) -> str | None:
    """`scheme://host[:port]` of the portal as this request reached it, or None
    when the Host header is missing or not one of ALLOWED_HOSTS."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return f"{'https' if _is_secure(scope) else 'http'}://{host}".lower()


def _trusted(origin: str) -> bool:
    """One of CSRF_TRUSTED_ORIGINS (exact, or a `*.example.com` entry)."""
    # Only its parsed CSRF_TRUSTED_ORIGINS are read: get_response is never called.
    csrf = CsrfViewMiddleware(lambda request: HttpResponse())
    if origin in {o.lower() for o in csrf.allowed_origins_exact}:
        return True
    scheme, _sep, netloc = origin.partition("://")
    return any(
        is_same_domain(netloc, host)
        for host in csrf.allowed_origin_subdomains.get(scheme, ())
    )


def origin_allowed(scope: dict[str, Any]) -> bool:
    """True when the handshake's Origin is the portal's own (or a trusted) one."""
    origin = _header(scope, b"origin")
    if not origin or origin == "null":
        return False
    origin = origin.strip().lower()
    own = _own_origin(scope)
    if own is None:
        return False
    return origin == own or _trusted(origin)


class SameOriginValidator:
    """ASGI middleware: WebSocket handshakes from another origin are refused
    (closed before the application sees them)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            # The handshake's ASGI scope, which channels' stubs name _ChannelScope.
            denier = WebsocketDenier()
            return await denier(cast("_ChannelScope", scope), receive, send)
        return await self.application(scope, receive, send)
