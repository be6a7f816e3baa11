"""Posting alert notifications to webhooks, through the outbound policy.

The same rules as subscription webhooks (actions.webhooks): connections pass
`mqttadmin.lib.outbound`, connection errors and 5xx are retried with backoff, 4xx
not, a refused destination is never retried and never described. Alerts are rare:
each notification has its own client, so no kept-alive connection outlives a
change of the policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from django.utils.translation import gettext as _

from mqttadmin.lib import outbound

WEBHOOK_ATTEMPTS = 4
WEBHOOK_BACKOFF = (0.5, 1.0, 2.0)
WEBHOOK_TIMEOUT_S = 10.0


class NotifyError(Exception):
    """A notification that could not be delivered (the text is fit for logs)."""


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL: its path and query may carry tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def webhook_post(
    url: str,
    body: str,
    idempotency_key: str,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST a JSON body; the HTTP status on success, NotifyError otherwise."""
    headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
    with outbound.http_client() as client:
        return _post_with_retries(client, url, body, headers, sleep)


def _post_with_retries(
    client: httpx.Client,
    url: str,
    body: str,
    headers: dict[str, str],
    sleep: Callable[[float], None],
) -> int:
    last_error = ""
    for attempt in range(WEBHOOK_ATTEMPTS):
        if attempt:
            sleep(WEBHOOK_BACKOFF[min(attempt - 1, len(WEBHOOK_BACKOFF) - 1)])
        try:
            response = client.post(
                url,
                content=body.encode("utf-8"),
                headers=headers,
                timeout=WEBHOOK_TIMEOUT_S,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            if outbound.blocked_cause(exc) is not None:
                raise NotifyError(
                    _("webhook %(url)s: %(reason)s")
                    % {
                        "url": _origin(url),
                        "reason": _("blocked by the outbound policy"),
                    }
                ) from None
            last_error = f"{exc.__class__.__name__}: {exc}"
            continue
        if response.status_code >= 500:
            last_error = f"HTTP {response.status_code}"
            continue
        if response.status_code >= 400:
            raise NotifyError(f"webhook answered HTTP {response.status_code}")
        return response.status_code
    raise NotifyError(f"webhook failed after {WEBHOOK_ATTEMPTS} attempts: {last_error}")
