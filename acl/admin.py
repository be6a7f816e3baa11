"""Admin for managed brokers, MQTT users, roles and rules.

Changes are audited with secrets masked. The admin edits the desired state only:
use the "Apply to the broker" action (a sync) afterwards.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from acl import services
from acl.models import ManagedBroker, MqttRole, MqttRule, MqttUser
from mqttadmin.admin_base import ProductScopedAdmin, ProductScopedInline


class ManagedBrokerAdminForm(forms.ModelForm):
    """The admin password is write-only: empty keeps it, "clear" removes it."""

    management_password = forms.CharField(
        label=_("admin password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
        help_text=_("Leave empty to keep the stored password."),
    )
    clear_management_password = forms.BooleanField(
        label=_("clear the stored admin password"), required=False
    )

    class Meta:
        model = ManagedBroker
        fields = [
            "broker",
            "management",
            "management_username",
            "management_password",
            "reload_method",
            "password_file",
            "acl_file",
            "pid_file",
            "reload_command",
            "restart_command",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("management_password", None)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("clear_management_password"):
            data["management_password"] = ""
        elif not data.get("management_password") and self.instance.pk:
            data["management_password"] = self.instance.management_password
        else:
            # Typed now: bound to where the broker points now.
            self.instance.management_bound_to = {}
        return data


# Syncing writes the password and ACL files on the portal's host and runs the reload
# command there: superusers only (`has_host_permission`), like the host settings.
@admin.action(description=_("Apply to the broker (sync)"), permissions=["host"])
def sync_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    for managed in queryset.select_related("broker"):
        report = services.acl_sync(actor=request.user, broker=managed.broker)
        level = messages.SUCCESS if report.sync.applied else messages.ERROR
        text = f"{managed.broker}: {report.sync.state}"
        if report.sync.error:
            text += f" ({report.sync.error})"
        modeladmin.message_user(request, text, level)


@admin.register(ManagedBroker)
class ManagedBrokerAdmin(ProductScopedAdmin):
    form = ManagedBrokerAdminForm
    audit_secret_fields = ManagedBroker.SECRET_FIELDS
    # Files the portal writes and commands it runs: read-only unless superuser.
    host_fields = ManagedBroker.HOST_FIELDS
    list_display = ("broker", "management", "reload_method", "last_sync_state")
    list_filter = ("management", "reload_method", "last_sync_state")
    search_fields = ("broker__name",)
    readonly_fields = ("last_sync_state", "last_sync_error", "last_sync_at")
    actions = [sync_selected]


class MqttRuleInline(ProductScopedInline, admin.TabularInline):
    model = MqttRule
    extra = 1


@admin.register(MqttRole)
class MqttRoleAdmin(ProductScopedAdmin):
    list_display = ("name", "broker")
    list_filter = ("broker",)
    search_fields = ("name", "broker__name")
    inlines = [MqttRuleInline]


@admin.register(MqttUser)
class MqttUserAdmin(ProductScopedAdmin):
    """Passwords are set on the Users & ACL tab (the hash is shown masked)."""

    audit_secret_fields = MqttUser.SECRET_FIELDS
    list_display = ("username", "broker", "enabled", "client_id", "password_pending")
    list_filter = ("enabled", "broker")
    search_fields = ("username", "client_id", "broker__name")
    exclude = ("password_hash",)
    readonly_fields = ("password_set", "password_pending")
    filter_horizontal = ("roles",)

    @admin.display(description=_("password"))
    def password_set(self, obj: MqttUser) -> str:
        return "***" if obj.password_hash else "—"
