"""The per-user budget of broker connection tests (API and page share it).

A connection test opens a TCP connection from the portal's network to a host and
port the user names, and tells refused, timed out and answered apart. Brokers are
often on private networks, so the outbound policy does not cover it; the budget
keeps it from being a port scanner (MQTTADMIN_BROKER_TEST_RATE, default 20/minute).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class ConnectionTestRateThrottle(SimpleRateThrottle):
    """Connection tests per user, whichever interface runs them."""

    scope = "broker_test"

    def get_rate(self) -> str | None:
        # Read when used, so settings overrides apply.
        return settings.MQTTADMIN_BROKER_TEST_RATE

    def allow_request(self, request: Any, view: Any) -> bool:
        # The rate is read per request (see get_rate), not once at construction.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = request.user
        if not user or not user.is_authenticated:
            return None
        # date_joined too: a user id reused after a restore or in a test database
        # must not inherit another account's count.
        ident = f"u{user.pk}-{user.date_joined.timestamp():.6f}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


def connection_test_allowed(request: Any) -> tuple[bool, float | None]:
    """For views outside DRF: (allowed, seconds to wait when not)."""
    throttle = ConnectionTestRateThrottle()
    if throttle.allow_request(request, None):
        return True, None
    return False, throttle.wait()
