"""Forms of the device pages. They validate and shape input; services do the writes."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from brokers.forms import QOS_CHOICES
from brokers.models import Broker
from devices.models import AlertRule, Device
from mqttadmin.models import Product

# Ranges of the detail page's charts: (label, span in seconds, bucket in seconds).
RANGES: dict[str, tuple[Any, int, int]] = {
    "1h": (_l("1 hour"), 3600, 60),
    "6h": (_l("6 hours"), 6 * 3600, 5 * 60),
    "24h": (_l("24 hours"), 86400, 15 * 60),
    "7d": (_l("7 days"), 7 * 86400, 3600),
    "30d": (_l("30 days"), 30 * 86400, 6 * 3600),
}
DEFAULT_RANGE = "1h"


class DeviceForm(forms.ModelForm):
    """Create or change a device of one product."""

    SECTIONS = (
        (_l("Device"), ("device_id", "name", "type", "broker")),
        (
            _l("Topics"),
            ("topic", "telemetry_topic", "command_topic", "availability_topic"),
        ),
        (
            _l("Availability"),
            ("payload_online", "payload_offline", "stale_after_s"),
        ),
        (_l("Telemetry"), ("telemetry_retention_days",)),
    )

    class Meta:
        model = Device
        fields = [
            "device_id",
            "name",
            "type",
            "broker",
            "topic",
            "telemetry_topic",
            "command_topic",
            "availability_topic",
            "payload_online",
            "payload_offline",
            "stale_after_s",
            "telemetry_retention_days",
        ]
        widgets = {
            "topic": forms.TextInput(),
            "telemetry_topic": forms.TextInput(),
            "command_topic": forms.TextInput(),
            "availability_topic": forms.TextInput(),
        }

    def __init__(self, *args: Any, product: Product, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.product = product
        self.instance.product = product
        broker_field = cast(forms.ModelChoiceField, self.fields["broker"])
        broker_field.queryset = Broker.objects.filter(product=product).order_by("name")

    @property
    def sections(self) -> list[tuple[str | Promise, list[forms.BoundField]]]:
        return [
            (legend, [self[name] for name in names if name in self.fields])
            for legend, names in self.SECTIONS
        ]

    def clean_device_id(self) -> str:
        device_id = self.cleaned_data["device_id"]
        clash = Device.objects.filter(
            product=self.product, device_id=device_id
        ).exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError(_("A device with this id exists in the product."))
        return device_id

    def service_fields(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


class CommandForm(forms.Form):
    payload = forms.CharField(
        label=_l("Payload"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    qos = forms.TypedChoiceField(
        label=_l("QoS"), choices=QOS_CHOICES, coerce=int, initial=0
    )


class ImportForm(forms.Form):
    broker = forms.ModelChoiceField(label=_l("Broker"), queryset=Broker.objects.none())
    file = forms.FileField(
        label=_l("CSV file"),
        help_text=_l(
            "Columns: device_id,name,type,topic and optionally availability_topic, "
            "with a header line."
        ),
    )

    def __init__(self, *args: Any, product: Product, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        broker_field = cast(forms.ModelChoiceField, self.fields["broker"])
        broker_field.queryset = Broker.objects.filter(product=product).order_by("name")


class AlertRuleForm(forms.ModelForm):
    """A rule for one device (the detail page); product-wide rules via the API."""

    notify_webhook = forms.URLField(
        label=_l("notify webhook"),
        required=False,
        max_length=1000,
        assume_scheme="https",
        help_text=_l("POSTed a JSON body when the alert opens and resolves."),
    )

    class Meta:
        model = AlertRule
        fields = [
            "key",
            "op",
            "threshold",
            "severity",
            "notify_email",
            "notify_webhook",
        ]


class RangeForm(forms.Form):
    range = forms.ChoiceField(
        choices=[(k, v[0]) for k, v in RANGES.items()], required=False
    )
    key = forms.CharField(required=False)
