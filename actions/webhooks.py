"""Calling webhooks: one pooled HTTP client behind the outbound policy, retries
with backoff, and errors that never quote a secret header value."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from brokers.action_kinds import ActionError
from mqttadmin.audit import SECRET_MASK
from mqttadmin.lib import outbound

WEBHOOK_ATTEMPTS = 4
WEBHOOK_BACKOFF = (0.5, 1.0, 2.0)

_client: Any = None
_client_lock = threading.Lock()


def _http_client() -> Any:
    """One pooled client for all webhooks: connections are kept alive and reused.

    Every connection it opens passes the outbound policy (mqttadmin.lib.outbound):
    internal addresses are refused after DNS resolution, redirects not followed.
    """
    global _client

    with _client_lock:
        if _client is None:
            _client = outbound.http_client()
        return _client


def _without_header_values(text: str, headers: dict[str, Any]) -> str:
    """An error text fit for logs and `last_error`: a transport error may quote a
    header it could not send, and header values are secrets."""
    for value in headers.values():
        if isinstance(value, str) and value:
            # As given, and as a bytes repr shows it (b'Bearer x\\r...').
            for form in {value, repr(value.encode("utf-8", "replace"))[2:-1]}:
                text = text.replace(form, SECRET_MASK)
    return text


BLOCKED = _l("blocked by the outbound policy")


def _url_for_error(url: str) -> str:
    """scheme://host[:port] of a URL: its path and query may carry tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def webhook_call(
    action: dict[str, Any],
    body: str,
    idempotency_key: str,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call a webhook; retry connection errors and 5xx with backoff, not 4xx."""
    import httpx

    method = str(action.get("method", "POST")).upper()
    headers = {"Idempotency-Key": idempotency_key, **action.get("headers", {})}
    if "content-type" not in {k.lower() for k in headers}:
        headers["Content-Type"] = "application/json"
    timeout = float(action.get("timeout_s", 10))
    last_error = ""
    for attempt in range(WEBHOOK_ATTEMPTS):
        if attempt:
            sleep(WEBHOOK_BACKOFF[min(attempt - 1, len(WEBHOOK_BACKOFF) - 1)])
        try:
            response = _http_client().request(
                method,
                action["url"],
                content=body.encode("utf-8") if method != "GET" else None,
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            if outbound.blocked_cause(exc) is not None:
                # Nothing was sent; retrying cannot help, and the text must not
                # depend on what (if anything) listens there.
                raise ActionError(
                    _("webhook %(url)s: %(reason)s")
                    % {"url": _url_for_error(action["url"]), "reason": BLOCKED}
                ) from None
            last_error = _without_header_values(
                f"{exc.__class__.__name__}: {exc}", action.get("headers", {})
            )
            continue
        if response.status_code >= 500:
            last_error = f"HTTP {response.status_code}"
            continue
        if response.status_code >= 400:
            raise ActionError(f"webhook answered HTTP {response.status_code}")
        return response.status_code
    raise ActionError(f"webhook failed after {WEBHOOK_ATTEMPTS} attempts: {last_error}")
