"""Filters of broker, subscription and publish template lists (API and pages).

They narrow querysets that are already scoped with `for_user`; ids are plain numbers
(not model choices) so an id outside the user's products gives an empty list rather
than revealing that it exists.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters

from brokers.models import Broker, PublishTemplate, Subscription


def _search(queryset: QuerySet, fields: tuple[str, ...], value: str) -> QuerySet:
    condition = Q()
    for field in fields:
        condition |= Q(**{f"{field}__icontains": value})
    return queryset.filter(condition)


class BrokerFilterSet(filters.FilterSet):
    product = filters.NumberFilter(field_name="product_id")
    enabled = filters.BooleanFilter()
    q = filters.CharFilter(method="filter_q", label="Name or host contains")

    class Meta:
        model = Broker
        fields = ["product", "enabled", "q"]

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return _search(queryset, ("name", "host"), value)


class SubscriptionFilterSet(filters.FilterSet):
    broker = filters.NumberFilter(field_name="broker_id")
    product = filters.NumberFilter(field_name="broker__product_id")
    enabled = filters.BooleanFilter()
    q = filters.CharFilter(method="filter_q", label="Name or topic filter contains")

    class Meta:
        model = Subscription
        fields = ["broker", "product", "enabled", "q"]

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return _search(queryset, ("name", "topic_filter"), value)


class PublishTemplateFilterSet(filters.FilterSet):
    broker = filters.NumberFilter(field_name="broker_id")
    product = filters.NumberFilter(field_name="broker__product_id")
    q = filters.CharFilter(method="filter_q", label="Name or topic contains")

    class Meta:
        model = PublishTemplate
        fields = ["broker", "product", "q"]

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return _search(queryset, ("name", "topic"), value)
