"""Forms of the Activity and Topics tabs."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _l

from history.models import Topic
from history.queries import HistoryQuery, filter_to_q


class HistoryFilterForm(forms.Form):
    """The Activity tab's filters; `clean()` leaves the parsed `query` behind, and
    the query's errors land next to the fields they name."""

    topic = forms.CharField(
        label=_l("Topic filter"),
        required=False,
        strip=False,
        widget=forms.TextInput(attrs={"placeholder": "sensors/+/temp"}),
    )
    since = forms.CharField(
        label=_l("Since"),
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "2026-01-31T12:00:00Z"}),
        help_text=_l("ISO 8601; UTC unless an offset is given."),
    )
    until = forms.CharField(
        label=_l("Until"),
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "2026-01-31T13:00:00Z"}),
    )
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
        # Raised with a dict, the error goes to the named fields.
        self.query = HistoryQuery.from_params(data)
        return data

    def filter_params(self) -> dict[str, str]:
        """The filters given, for links that keep them (export, paging, delete)."""
        return {
            name: self.cleaned_data[name]
            for name in self.FIELDS
            if self.cleaned_data.get(name)
        }


class TopicFilterForm(forms.Form):
    """The Topics tab's filter box: an MQTT filter that narrows the tree."""

    filter = forms.CharField(
        label=_l("Topic filter"),
        required=False,
        strip=False,
        widget=forms.TextInput(attrs={"placeholder": "sensors/#"}),
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
