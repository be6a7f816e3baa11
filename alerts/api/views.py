"""Alerts API: list and read the alerts of the user's products, acknowledge them.

Alerts are opened and resolved by the system (device rules, broker health,
subscription actions); users only acknowledge them, which needs the operator role.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alerts import selectors, services
from alerts.api.serializers import AlertSerializer
from alerts.models import Alert, AlertState, Severity
from mqttadmin.api.base import ProductScopedViewSet
from mqttadmin.roles import Role


class AlertFilterSet(filters.FilterSet):
    product = filters.NumberFilter(field_name="product_id")
    state = filters.ChoiceFilter(choices=AlertState.choices)
    severity = filters.ChoiceFilter(choices=Severity.choices)
    acknowledged = filters.BooleanFilter(
        field_name="acknowledged_at", lookup_expr="isnull", exclude=True
    )

    class Meta:
        model = Alert
        fields = ["product", "state", "severity", "acknowledged"]


class AlertViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProductScopedViewSet
):
    """Alerts of the user's products, newest first (filter with ?state=open|resolved,
    ?product=, ?severity=, ?acknowledged=)."""

    serializer_class = AlertSerializer
    filterset_class = AlertFilterSet
    required_roles = {"ack": Role.OPERATOR}

    def get_queryset(self) -> QuerySet[Alert]:
        return selectors.alerts_for(self.request.user)

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def ack(self, request: Request, pk: str) -> Response:
        """Acknowledge the alert (operators and up; again changes nothing)."""
        alert = services.alert_acknowledge(actor=request.user, alert=self.get_object())
        return Response(AlertSerializer(alert).data)
