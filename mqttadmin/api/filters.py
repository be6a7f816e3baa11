"""The API's filter backend: django-filter with number filters kept in range."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django_filters import IsoDateTimeFilter, NumberFilter
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend

from mqttadmin.lib.times import to_utc

# The database's integer range (64-bit signed): a filter value outside it would
# fail in the database (a 500) instead of as bad input.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class BoundedFilterBackend(DjangoFilterBackend):
    """Like DjangoFilterBackend, but `?product=1e99` is a 400 naming the parameter."""

    def get_filterset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            for filter_ in filterset.filters.values():
                if isinstance(filter_, NumberFilter):
                    filter_.extra.setdefault("min_value", INT64_MIN)
                    filter_.extra.setdefault("max_value", INT64_MAX)
                    # A field cached before (copied from the class) lacks the bounds.
                    filter_.__dict__.pop("_field", None)
        return filterset


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time handed to the database in UTC (see lib.times.to_utc)."""

    def to_python(self, value: Any) -> Any:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        errors: dict[str, str] = {}
        utc = to_utc(parsed, "time", errors)
        if utc is None:
            raise ValidationError(errors["time"])
        return utc


class UtcIsoDateTimeFilter(IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
