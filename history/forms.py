"""Forms of the Activity and Topics tabs."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from history.models import Topic
from history.queries import HistoryQuery, filter_to_q
from mqttadmin.lib.times import to_utc

# What a datetime-local input sends and shows: local wall time, to the second.
LOCAL_INPUT_FORMAT = "%Y-%m-%dT%H:%M:%S"


def local_time(value: str) -> datetime.datetime | None:
    """A time from the picker (wall time in the user's zone) or from a link (ISO
    8601 with an offset, as exports and "Older" carry it), made aware; None when
    it is neither."""
    try:
        parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if timezone.is_naive(parsed):
        # The zone the request runs in (the user's, once they have chosen one).
        try:
            parsed = timezone.make_aware(parsed, timezone.get_current_timezone())
        except (OverflowError, ValueError):
            return None
    return parsed


class LocalTimeInput(forms.DateTimeInput):
    """A browser's date-time picker, showing any accepted value as the user's
    wall time (a link's `…Z` time too, which the picker could not show)."""

    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(attrs={"step": "1"}, format=LOCAL_INPUT_FORMAT)

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, str):
            parsed = local_time(value) if value else None
            if parsed is None:
                return value
            value = parsed
        if isinstance(value, datetime.datetime) and timezone.is_aware(value):
            # At the edge of time the value is shown as given.
            with contextlib.suppress(OverflowError):
                value = timezone.localtime(value).replace(tzinfo=None)
        return super().format_value(value)


class LocalTimeField(forms.CharField):
    """A time in the user's zone from a date-time picker; cleans to an aware
    datetime in UTC, an error naming the field when it is not a time or lies
    outside the years history can be asked about."""

    widget = LocalTimeInput

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return None
        parsed = local_time(text)
        if parsed is None:
            raise ValidationError(
                _("%(field)s is not a date and time (e.g. 2026-01-31 12:00).")
                % {"field": self.label},
                code="invalid",
            )
        errors: dict[str, str] = {}
        in_utc = to_utc(parsed, str(self.label), errors)
        if in_utc is None:
            raise ValidationError(next(iter(errors.values())), code="invalid")
        return in_utc


class HistoryFilterForm(forms.Form):
    """The Activity tab's filters; `clean()` leaves the parsed `query` behind, and
    the query's errors land next to the fields they name."""

    topic = forms.CharField(
        label=_l("Topic filter"),
        required=False,
        strip=False,
        widget=forms.TextInput(attrs={"placeholder": "sensors/+/temp"}),
    )
    since = LocalTimeField(label=_l("Since"), required=False)
    until = LocalTimeField(label=_l("Until"), required=False)
    search = forms.CharField(
        label=_l("Search"),
        required=False,
        widget=forms.TextInput(attrs={"type": "search"}),
        help_text=_l("Text in the payload or the topic."),
    )

    FIELDS = ("topic", "since", "until", "search")

    query: HistoryQuery  # set by a successful clean()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None  # Form.clean returns cleaned_data
        if self.errors:
            return data
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            raise ValidationError(
                {"until": _("Until is before Since: choose a later time.")}
            )
        # Raised with a dict, the error goes to the named fields.
        self.query = HistoryQuery.from_params(self.filter_params())
        return data

    def filter_params(self) -> dict[str, str]:
        """The filters given, for links that keep them (export, paging, delete):
        times in UTC with their offset, so the API (which reads a time without
        one as UTC) and this form read them alike."""
        params: dict[str, str] = {}
        for name in self.FIELDS:
            value = self.cleaned_data.get(name)
            if isinstance(value, datetime.datetime):
                value = (
                    value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
                )
            if value:
                params[name] = value
        return params


class TopicFilterForm(forms.Form):
    """The Topics tab's filter box: an MQTT filter and a search (words anywhere
    in a topic) that narrow the tree."""

    filter = forms.CharField(
        label=_l("Topic filter"),
        required=False,
        strip=False,
        widget=forms.TextInput(attrs={"placeholder": "sensors/#"}),
    )
    q = forms.CharField(
        label=_l("Search"),
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _l("Part of a topic or its note")}
        ),
    )

    def clean_filter(self) -> str:
        value = self.cleaned_data["filter"].strip()
        if value:
            filter_to_q(value)
        return value


class TopicAnnotationForm(forms.ModelForm):
    """An operator's description and unit of a topic."""

    class Meta:
        model = Topic
        fields = ["description", "unit"]
        widgets = {"unit": forms.TextInput(attrs={"placeholder": "°C"})}
