"""`{% load units %}`: the one way templates write instants, sizes, durations and
measured numbers (the rules are in `mqttadmin.lib.units`)."""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from mqttadmin.lib import units
from mqttadmin.timezones import time_zone_form, zone_name

register = template.Library()

_DASH = mark_safe('<span class="muted">—</span>')


def _instant(value: Any) -> datetime.datetime | None:
    return value if isinstance(value, datetime.datetime) else None


@register.filter(is_safe=True)
def when(value: Any) -> SafeString:
    """`<time>` with `2026-12-03 02:38:01 EST`, the exact ISO time on hover."""
    instant = _instant(value)
    if instant is None:
        return _DASH
    iso = units.iso_instant(instant)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        iso,
        iso,
        units.format_instant(instant),
    )


@register.filter(is_safe=True)
def ago(value: Any) -> SafeString:
    """`<time>` with `just now` / `6 minutes ago`; the instant itself on hover."""
    instant = _instant(value)
    if instant is None:
        return _DASH
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        units.iso_instant(instant),
        units.format_instant(instant),
        units.format_ago(instant),
    )


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    return None


@register.filter(name="bytes", is_safe=True)
def bytes_filter(value: Any) -> SafeString:
    """`57 KiB`, the exact count on hover."""
    amount = _number(value)
    if amount is None:
        return _DASH
    return format_html(
        '<data value="{}" title="{} B">{}</data>',
        int(amount),
        f"{int(amount):,}",
        units.format_bytes(amount),
    )


@register.filter(is_safe=True)
def duration(value: Any) -> SafeString | str:
    """Seconds (or a timedelta) as `6 min 54 s`."""
    if isinstance(value, datetime.timedelta):
        return units.format_duration(value)
    seconds = _number(value)
    if seconds is None:
        return _DASH
    return units.format_duration(seconds)


@register.filter(is_safe=True)
def decimals(value: Any, places: Any) -> SafeString | str:
    """A measured number with a fixed number of decimals (`7.30` -> `7.3` with 1):
    one width for every value of the same quantity."""
    if value is None:
        return _DASH
    try:
        count = int(places)
    except (TypeError, ValueError):
        count = units.MAX_DECIMALS
    return units.format_number(value, count)


@register.simple_tag
def clock_attributes() -> SafeString:
    """`data-time-zone` and `data-zone-labels` for <html>: what
    static/js/clock.js needs to write times as the server does."""
    zone = timezone.get_current_timezone()
    labels = units.zone_labels(zone, timezone.now())
    return format_html(
        'data-time-zone="{}" data-zone-labels="{}"',
        zone_name(zone),
        json.dumps({str(k): v for k, v in labels.items()}, separators=(",", ":")),
    )


@register.inclusion_tag("mqttadmin/partials/time_zone_form.html", takes_context=True)
def time_zone_section(context: template.Context) -> dict[str, Any]:
    """The account page's time-zone section."""
    request = context["request"]
    return {
        "form": time_zone_form(request),
        "zone": zone_name(timezone.get_current_timezone()),
        "now": timezone.now(),
        "csrf_token": context.get("csrf_token"),
    }
