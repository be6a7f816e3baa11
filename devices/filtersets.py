"""Filters of device and alert rule lists (API and pages).

They narrow querysets already scoped with `for_user`; ids are plain numbers so an
id outside the user's products gives an empty list rather than revealing it.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters

from devices.models import AlertRule, Device, DeviceQuerySet
from devices.selectors import STATUS_FILTERS


class DeviceFilterSet(filters.FilterSet):
    product = filters.NumberFilter(field_name="product_id")
    broker = filters.NumberFilter(field_name="broker_id")
    status = filters.ChoiceFilter(
        method="filter_status", choices=[(s, s) for s in STATUS_FILTERS]
    )
    type = filters.CharFilter(field_name="type")
    q = filters.CharFilter(method="filter_q", label="Id, name or topic contains")

    class Meta:
        model = Device
        fields = ["product", "broker", "status", "type", "q"]

    def filter_status(
        self, queryset: DeviceQuerySet, name: str, value: str
    ) -> QuerySet:
        if value == "stale":
            return queryset.stale()
        return queryset.filter(status=value)

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(device_id__icontains=value)
            | Q(name__icontains=value)
            | Q(topic__icontains=value)
        )


class AlertRuleFilterSet(filters.FilterSet):
    product = filters.NumberFilter(field_name="product_id")
    device = filters.NumberFilter(field_name="device_id")
    key = filters.CharFilter(field_name="key")
    enabled = filters.BooleanFilter()

    class Meta:
        model = AlertRule
        fields = ["product", "device", "key", "enabled"]
