"""Admin for devices, alert rules and imports.

Device changes are audited and keep the managed subscriptions in step, as the pages
do. Telemetry points are too many to browse here: the pages and the API show them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from devices import services
from devices.models import AlertRule, Device, DeviceImport
from mqttadmin.admin_base import ProductScopedAdmin


@admin.register(Device)
class DeviceAdmin(ProductScopedAdmin):
    list_display = [
        "name",
        "device_id",
        "product",
        "broker",
        "type",
        "status",
        "stale",
        "last_seen_at",
    ]
    list_filter = ["status", "stale", "product", "type"]
    search_fields = ["device_id", "name", "topic", "product__name"]
    list_select_related = ["product", "broker"]
    readonly_fields = [
        "status",
        "status_changed_at",
        "last_seen_at",
        "stale",
        "stale_at",
        "last_values",
        "telemetry_subscription",
        "availability_subscription",
        "created_at",
        "updated_at",
    ]

    def save_model(
        self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool
    ) -> None:
        stored = Device.objects.filter(pk=obj.pk).values_list("topic", flat=True)
        obj.apply_topic_defaults(stored.first())
        super().save_model(request, obj, form, change)
        services.device_sync_subscriptions(actor=request.user, device=obj)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.device_delete(actor=request.user, device=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for device in queryset:
            services.device_delete(actor=request.user, device=device)


@admin.register(AlertRule)
class AlertRuleAdmin(ProductScopedAdmin):
    list_display = ["__str__", "product", "device", "severity", "enabled"]
    list_filter = ["enabled", "severity", "product"]
    search_fields = ["key", "device__device_id", "product__name"]
    list_select_related = ["product", "device"]
    raw_id_fields = ["device"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(DeviceImport)
class DeviceImportAdmin(ProductScopedAdmin):
    """Imports are started from the devices page; the admin only shows them."""

    list_display = ["pk", "product", "broker", "filename", "state", "imported"]
    list_filter = ["state"]
    exclude = ["text"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
