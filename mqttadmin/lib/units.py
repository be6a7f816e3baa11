"""How the portal writes instants, sizes, durations and measured numbers.

One function per kind, so a table, a card, the live feed and (through
static/js/clock.js, which follows the same rules) a chart say the same thing the
same way. Instants are written in the active time zone (`mqttadmin.timezones`
activates the user's), always with the zone's name.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import math
from collections.abc import Iterable

from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _

# `2026-12-03 02:38:01 EST`: sortable, one width, 24 h, the zone named.
INSTANT_FORMAT = "%Y-%m-%d %H:%M:%S"
# Telemetry values show at most this many decimals: sensors rarely mean more, and
# float noise (0.30000000000000004) is never news.
MAX_DECIMALS = 3
# Below this a past instant reads "just now": "0 minutes ago" says nothing more.
JUST_NOW = datetime.timedelta(seconds=60)


def zone_label(moment: datetime.datetime) -> str:
    """The zone's name at `moment` (aware): "EST", "CEST", "UTC", or "UTC+05:45"
    for zones whose IANA abbreviation is only a number ("+0545", "-03")."""
    name = moment.tzname() or ""
    if name and name[0] not in "+-":
        return name
    return offset_label(moment.utcoffset() or datetime.timedelta(0))


def offset_label(offset: datetime.timedelta) -> str:
    """`UTC-03`, `UTC+05:45`: how a zone without letters is named."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}" + (f":{rest:02d}" if rest else "")


def local_instant(value: datetime.datetime) -> datetime.datetime:
    """`value` in the active zone; a naive value is taken as UTC (what the
    database stores)."""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    return timezone.localtime(value)


def format_instant(value: datetime.datetime) -> str:
    """`2026-12-03 02:38:01 EST`: the one way an instant is written."""
    local = local_instant(value)
    return f"{local.strftime(INSTANT_FORMAT)} {zone_label(local)}"


def format_instant_utc(value: datetime.datetime) -> str:
    """`2026-12-03 07:38:01 UTC`: for text stored once and read in any zone."""
    with timezone.override(datetime.UTC):
        return format_instant(value)


def iso_instant(value: datetime.datetime) -> str:
    """The exact instant, ISO 8601 with the zone's offset and milliseconds."""
    return local_instant(value).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=64)
def _labels_of_year(zone: datetime.tzinfo, year: int) -> tuple[tuple[int, str], ...]:
    labels: dict[int, str] = {}
    day = datetime.datetime(year, 1, 1, 12, tzinfo=datetime.UTC)
    while day.year == year:
        local = day.astimezone(zone)
        offset = local.utcoffset() or datetime.timedelta(0)
        labels.setdefault(int(offset.total_seconds() // 60), zone_label(local))
        day += datetime.timedelta(days=1)
    return tuple(sorted(labels.items()))


def zone_labels(zone: datetime.tzinfo, around: datetime.datetime) -> dict[int, str]:
    """The zone's names by UTC offset in minutes, over the year before and after
    `around`: the browser knows the offset of any instant (Intl), not the name the
    server's tz database gives it, and charts must name it as tables do."""
    labels: dict[int, str] = {}
    for year in (around.year - 1, around.year, around.year + 1):
        labels.update(_labels_of_year(zone, year))
    return labels


def format_ago(value: datetime.datetime, now: datetime.datetime | None = None) -> str:
    """`just now`, `6 minutes ago`, `3 hours, 2 minutes ago`."""
    now = now or timezone.now()
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    # A clock a little ahead of the server's (a device's) is not "in the future".
    if now - value < JUST_NOW:
        return _("just now")
    return _("%(span)s ago") % {"span": timesince(value, now, depth=2)}


_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(value: int | float) -> str:
    """`512 B`, `5.3 KiB`, `57 KiB`, `1 MiB`: binary units, three figures at
    most (the exact count goes in a title)."""
    amount = float(value)
    if not math.isfinite(amount):
        return str(value)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount < 1024:
        return f"{sign}{int(amount)} B"
    unit = ""
    for unit in _BINARY_UNITS:
        amount /= 1024
        if amount < 1024 or unit == _BINARY_UNITS[-1]:
            break
    shown = f"{amount:.1f}" if amount < 9.95 else f"{amount:.0f}"
    return f"{sign}{shown.removesuffix('.0')} {unit}"


# Largest first: a duration shows its two largest non-zero units.
_DURATION_UNITS = (
    (86400, "d"),
    (3600, "h"),
    (60, "min"),
    (1, "s"),
)


def format_duration(value: float | datetime.timedelta) -> str:
    """`6 min 54 s`, `2 h 5 min`, `3 d 4 h`, `0 s`, `250 ms`: the two largest
    units, rounded down (an uptime is never shown longer than it was)."""
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    seconds = float(seconds)
    if not math.isfinite(seconds):
        return str(value)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if 0 < seconds < 1:
        return f"{sign}{int(seconds * 1000)} ms"
    rest = int(seconds)
    parts: list[str] = []
    for size, unit in _DURATION_UNITS:
        count, rest = divmod(rest, size)
        if count or parts:
            parts.append(f"{count} {unit}")
        if len(parts) == 2:
            break
    parts = [p for p in parts if not p.startswith("0 ")] or ["0 s"]
    return sign + " ".join(parts)


def decimals_of(value: float | int | decimal.Decimal) -> int:
    """How many decimals `value` needs, up to MAX_DECIMALS (21.50 → 1, 7 → 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    rounded = round(decimal.Decimal(str(value)), MAX_DECIMALS).normalize()
    exponent = rounded.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def key_precision(values: Iterable[object]) -> int:
    """One key's decimals: the most any of its values needs, so 21, 21.5 and
    21.25 read 21.00, 21.50, 21.25 (a column of one key lines up)."""
    best = 0
    for value in values:
        if isinstance(value, int | float | decimal.Decimal):
            best = max(best, decimals_of(value))
    return best


def format_number(value: object, decimals: int) -> str:
    """`value` with exactly `decimals` decimals (capped at MAX_DECIMALS); other
    values (text, None) as they are, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    decimals = max(0, min(int(decimals), MAX_DECIMALS))
    return f"{value:.{decimals}f}"
