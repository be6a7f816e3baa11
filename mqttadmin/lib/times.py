"""Times given by users (query parameters, filters), read the same way everywhere."""

from __future__ import annotations

import datetime

from django.utils import timezone
from django.utils.translation import gettext as _

# Times users give are bounded: readers take spans around them (`until - 24 h`,
# buckets of up to a day), which overflow Python's datetime in year 1 or 9999
# (an OverflowError, a 500). A year either side is room enough.
EARLIEST = datetime.datetime(2, 1, 1, tzinfo=datetime.UTC)
LATEST = datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC)


def parse_iso_time(
    value: str | None, name: str, errors: dict[str, str]
) -> datetime.datetime | None:
    """An ISO 8601 time in UTC (naive ones are taken as UTC), or None with a
    message for `name` in `errors`."""
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        errors[name] = (
            _("%s is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z).") % name
        )
        return None
    return to_utc(parsed, name, errors)


def to_utc(
    value: datetime.datetime, name: str, errors: dict[str, str]
) -> datetime.datetime | None:
    """`value` in UTC. Python accepts offsets up to ±23:59 and PostgreSQL only up
    to ±15:59: sent as UTC, any offset Python took is fine for the database."""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    try:
        value = value.astimezone(datetime.UTC)
    except OverflowError:
        errors[name] = _("%s is out of range.") % name
        return None
    if not EARLIEST <= value < LATEST:
        errors[name] = _("%(name)s must be between %(earliest)s and %(latest)s.") % {
            "name": name,
            "earliest": EARLIEST.date().isoformat(),
            "latest": LATEST.date().isoformat(),
        }
        return None
    return value
