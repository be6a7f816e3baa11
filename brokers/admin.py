"""Admin for broker connections, their subscriptions and publish templates.

Changes are audited (secrets masked) and nudge the MQTT runtime like the pages do.
Status rows and runtime leases belong to the runtime: the admin only shows them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from brokers import services
from brokers.action_headers import keep_masked_headers, mask_headers
from brokers.forms import SecretTextarea
from brokers.models import (
    Broker,
    BrokerStatus,
    PublishTemplate,
    Subscription,
)
from brokers.secret_binding import BINDING_FIELDS, secret_binding_errors
from mqttadmin.admin_base import (
    ProductScopedAdmin,
    ProductScopedInline,
    ReadOnlyScopedAdmin,
)


class BrokerAdminForm(forms.ModelForm):
    """Secrets are write-only: empty keeps the stored value, "clear" removes it."""

    password = forms.CharField(
        label=_("password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
        help_text=_("Leave empty to keep the stored password."),
    )
    clear_password = forms.BooleanField(
        label=_("clear the stored password"), required=False
    )
    client_key = forms.CharField(
        label=_("client key (PEM)"),
        required=False,
        widget=SecretTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text=_("Leave empty to keep the stored key."),
    )
    clear_client_key = forms.BooleanField(
        label=_("clear the stored client key"), required=False
    )

    class Meta:
        model = Broker
        # The admin passes the fieldsets' fields; these are the ones shaped here.
        fields = ["password", "client_key"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("password", None)
        self.initial.pop("client_key", None)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns cleaned_data
        for name in Broker.SECRET_FIELDS:
            if cleaned.get(f"clear_{name}"):
                cleaned[name] = ""
            elif not cleaned.get(name):
                cleaned[name] = getattr(self.instance, name, "") or ""
        if self.instance.pk:
            # As in the API and the pages: a kept secret stays with the
            # destinations it was saved for (brokers.secret_binding).
            candidate = SimpleNamespace(
                **{
                    name: cleaned.get(name, getattr(self.instance, name))
                    for name in BINDING_FIELDS
                }
            )
            supplied = {
                name
                for name in Broker.SECRET_FIELDS
                if self.data.get(self.add_prefix(name)) or cleaned.get(f"clear_{name}")
            }
            for name, error in secret_binding_errors(
                self.instance, candidate, supplied
            ).items():
                self.add_error(name, error)
        return cleaned


class SubscriptionAdminForm(forms.ModelForm):
    """Header values of the actions show as "***"; saving "***" keeps the stored
    value, another value replaces it (as in the API and the pages)."""

    class Meta:
        model = Subscription
        fields = ["broker", *services.SUBSCRIPTION_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "actions" in self.initial:
            self.initial["actions"] = mask_headers(self.initial["actions"])
        if "actions" in self.fields:
            self.fields["actions"].help_text = _(
                "Header values show as ***: leave *** to keep one."
            )

    def clean_actions(self) -> Any:
        stored = (
            Subscription.objects.filter(pk=self.instance.pk)
            .values_list("actions", flat=True)
            .first()
            if self.instance.pk
            else None
        )
        return keep_masked_headers(self.cleaned_data.get("actions"), stored or [])


class NudgingAdmin(ProductScopedAdmin):
    """Saves and deletes tell the runtime to reconcile now rather than on its timer."""

    def save_model(
        self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        services.runtime_nudge()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        services.runtime_nudge()

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        super().delete_queryset(request, queryset)
        services.runtime_nudge()


class ReadOnlyAdmin(ReadOnlyScopedAdmin):
    """Rows written by the runtime: looked at, never edited by hand."""

    product_path = "broker__product"


class SubscriptionInline(ProductScopedInline, admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ["name", "topic_filter", "qos", "enabled", "store_messages"]


@admin.register(Broker)
class BrokerAdmin(NudgingAdmin):
    form = BrokerAdminForm
    audit_secret_fields = Broker.SECRET_FIELDS
    list_display = [
        "name",
        "product",
        "address",
        "protocol",
        "enabled",
        "state",
        "updated_at",
    ]
    list_filter = ["enabled", "product", "protocol", "transport", "use_tls"]
    search_fields = ["name", "host", "client_id", "username", "product__name"]
    list_select_related = ["product", "status"]
    readonly_fields = ["created_at", "updated_at", "reconnect_requested_at"]
    inlines = [SubscriptionInline]
    fieldsets = [
        (None, {"fields": ["product", "name", "enabled"]}),
        (
            _("Connection"),
            {"fields": ["host", "port", "transport", "ws_path", "protocol"]},
        ),
        (
            _("Authentication"),
            {"fields": ["username", "password", "clear_password"]},
        ),
        (
            _("TLS"),
            {
                "fields": [
                    "use_tls",
                    "tls_insecure",
                    "ca_cert",
                    "client_cert",
                    "client_key",
                    "clear_client_key",
                ]
            },
        ),
        (
            _("Session"),
            {
                "fields": [
                    "client_id",
                    "clean_start",
                    "keepalive",
                    "session_expiry_interval",
                    "connect_timeout",
                    "fallback_hosts",
                    "max_payload_bytes",
                    "history_payload_max_bytes",
                ]
            },
        ),
        (
            _("Times"),
            {
                "fields": ["created_at", "updated_at", "reconnect_requested_at"],
                "classes": ["collapse"],
            },
        ),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # Fields added to the model later (history limits, ...) still show up.
        fieldsets = list(super().get_fieldsets(request, obj))
        listed = {name for _n, opts in fieldsets for name in opts["fields"]}
        rest: list[Any] = [
            f.name
            for f in Broker._meta.concrete_fields
            if f.editable and not f.primary_key and f.name not in listed
        ]
        if rest:
            fieldsets.insert(-1, (_("More"), {"fields": rest}))
        return fieldsets

    @admin.display(description=_("state"))
    def state(self, obj: Broker) -> str:
        try:
            return obj.status.get_state_display()
        except BrokerStatus.DoesNotExist:
            return "—"


@admin.register(BrokerStatus)
class BrokerStatusAdmin(ReadOnlyAdmin):
    list_display = [
        "broker",
        "state",
        "messages_received",
        "subscribed_topics_count",
        "connected_host",
        "owner",
        "updated_at",
    ]
    list_filter = ["state", "broker__product"]
    search_fields = ["broker__name", "client_id", "connection_error", "owner"]
    list_select_related = ["broker"]


@admin.register(Subscription)
class SubscriptionAdmin(NudgingAdmin):
    form = SubscriptionAdminForm
    list_display = [
        "name",
        "topic_filter",
        "broker",
        "qos",
        "enabled",
        "store_messages",
    ]
    list_filter = ["enabled", "store_messages", "qos", "broker__product"]
    search_fields = ["name", "topic_filter", "broker__name"]
    list_select_related = ["broker"]
    autocomplete_fields = ["broker"]


@admin.register(PublishTemplate)
class PublishTemplateAdmin(ProductScopedAdmin):
    list_display = ["name", "topic", "broker", "encoding", "qos", "retain"]
    list_filter = ["encoding", "qos", "retain", "broker__product"]
    search_fields = ["name", "topic", "broker__name"]
    list_select_related = ["broker"]
    autocomplete_fields = ["broker"]
