"""The user's time zone: the one every page, socket and chart shows times in.

The browser tells its zone (static/js/clock.js writes
`Intl.DateTimeFormat().resolvedOptions().timeZone` into the `tz` cookie on every
page, the login page included, so the first page after logging in is already
right); a zone the user picks on the account page wins over it, on every browser.
A cookie naming no zone the server knows is ignored: the server's TIME_ZONE
(UTC by default) applies.
"""

from __future__ import annotations

import datetime
import functools
import zoneinfo
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from mqttadmin.models import UserPreferences

TIME_ZONE_COOKIE = "tz"


@functools.cache
def zone_names() -> tuple[str, ...]:
    """Every zone the server's tz database knows, sorted (the account page's list)."""
    return tuple(sorted(zoneinfo.available_timezones()))


@functools.cache
def _known(name: str) -> bool:
    return name in frozenset(zone_names())


def zone_or_none(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The zone `name` names, or None for anything else (the cookie is input)."""
    if not name or len(name) > 64 or not _known(name):
        return None
    return zoneinfo.ZoneInfo(name)


def chosen_zone_name(user: Any) -> str:
    """The zone the user picked on the account page; empty follows the browser."""
    if user is None or not user.is_authenticated:
        return ""
    chosen = (
        UserPreferences.objects.filter(user_id=user.pk)
        .values_list("time_zone", flat=True)
        .first()
    )
    return chosen or ""


def zone_for(user: Any, cookie: str | None) -> zoneinfo.ZoneInfo | datetime.tzinfo:
    """The zone to show times in: the user's choice, else the browser's, else the
    server's default."""
    return (
        zone_or_none(chosen_zone_name(user))
        or zone_or_none(cookie)
        or timezone.get_default_timezone()
    )


def zone_name(zone: datetime.tzinfo) -> str:
    """`America/New_York`; `UTC` for the default when it is `datetime.UTC`."""
    return str(getattr(zone, "key", None) or zone.tzname(None) or "UTC")


class TimeZoneMiddleware:
    """Activates the user's zone for the request, so templates, forms and
    `timezone.localtime` all use it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = zone_for(
            getattr(request, "user", None), request.COOKIES.get(TIME_ZONE_COOKIE)
        )
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(label=gettext_lazy("Time zone"), required=False)

    def __init__(self, *args: Any, browser_zone: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        follow = _("This browser's zone")
        if browser_zone:
            follow = _("This browser's zone (%(zone)s)") % {"zone": browser_zone}
        field = self.fields["time_zone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", follow), *((name, name) for name in zone_names())]
        field.error_messages["invalid_choice"] = _(
            "Time zone: “%(value)s” is not a zone this server knows; choose one "
            "from the list (IANA names such as Europe/Berlin)."
        )


def time_zone_form(request: HttpRequest) -> TimeZoneForm:
    """The account page's form, showing the user's current choice."""
    browser = zone_or_none(request.COOKIES.get(TIME_ZONE_COOKIE))
    return TimeZoneForm(
        initial={"time_zone": chosen_zone_name(request.user)},
        browser_zone=zone_name(browser) if browser else "",
    )


@login_required
@require_POST
def account_time_zone(request: HttpRequest) -> HttpResponse:
    """Save the zone the user picked (empty: follow the browser again)."""
    form = TimeZoneForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("time_zone", []):
            messages.error(request, str(error))
        return redirect("account-security")
    chosen = form.cleaned_data["time_zone"]
    UserPreferences.objects.update_or_create(
        user=request.user, defaults={"time_zone": chosen}
    )
    if chosen:
        messages.success(request, _("Times are now shown in %s.") % chosen)
    else:
        messages.success(request, _("Times now follow this browser's time zone."))
    return redirect("account-security")
