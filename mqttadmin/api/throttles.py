"""API throttles: per token (or user) and per client address for anonymous calls.

Kept apart from the views: DRF imports these while `rest_framework.views` loads.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

from knox.models import AuthToken
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from mqttadmin.security import client_ip


class _LiveRateThrottle(SimpleRateThrottle):
    """Reads its rate when used, not when imported, so settings overrides apply."""

    def get_rate(self) -> str | None:
        # The stubs type the rates as numbers; DRF's are "100/min" strings.
        rates = cast(dict[str | None, str | None], api_settings.DEFAULT_THROTTLE_RATES)
        return rates.get(self.scope)


class TokenRateThrottle(_LiveRateThrottle):
    """Authenticated calls, counted per API token (per user for sessions)."""

    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if not user or not user.is_authenticated:
            return None
        if isinstance(request.auth, AuthToken):
            # The stored digest: the cache must not hold usable tokens.
            ident = "t" + hashlib.sha256(request.auth.digest.encode()).hexdigest()[:32]
        else:
            # date_joined too: a user id reused after a restore or in a test
            # database must not inherit another account's counter.
            ident = f"u{user.pk}-{user.date_joined.timestamp():.6f}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonymousRateThrottle(_LiveRateThrottle):
    """Unauthenticated calls (the token endpoint), counted per client address."""

    scope = "anonymous"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {
            "scope": self.scope,
            "ident": client_ip(request) or "unknown",
        }
