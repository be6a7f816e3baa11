"""Forms of the broker pages. They validate and shape input; services do the writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from django import forms
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils.functional import Promise
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from brokers.action_headers import secret_by_default, secret_names
from brokers.action_kinds import ACTION_KINDS, action_types, editor_choices
from brokers.choices import PayloadEncoding, Protocol
from brokers.client import ConnectionSettings
from brokers.models import Broker, Subscription, parse_host_port
from mqttadmin.audit import SECRET_MASK
from mqttadmin.lib.topics import validate_topic_filter, validate_topic_name
from mqttadmin.models import Product

QOS_CHOICES = [(0, "0"), (1, "1"), (2, "2")]


class SecretTextarea(forms.Textarea):
    """A textarea that never writes its value back into the page."""

    def format_value(self, value: Any) -> str | None:
        return None


def apply_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """Put a service's ValidationError next to the fields it names (else on top)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _bounds_from_model(form: forms.ModelForm) -> None:
    """Give number fields the model's range (a ModelForm copies only a
    PositiveIntegerField's 0): the form refuses 99999 as a port by the field's
    rule, and the input's min/max let the browser say so before posting."""
    model = form._meta.model
    for name, field in form.fields.items():
        if not isinstance(field, forms.IntegerField | forms.FloatField):
            continue
        try:
            model_field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        for validator in model_field.validators:
            if isinstance(validator, MinValueValidator):
                field.min_value = validator.limit_value
                field.widget.attrs["min"] = validator.limit_value
            elif isinstance(validator, MaxValueValidator):
                field.max_value = validator.limit_value
                field.widget.attrs["max"] = validator.limit_value
            else:
                continue
            if validator not in field.validators:
                field.validators.append(validator)


class BrokerForm(forms.ModelForm):
    """Create or change a broker.

    Secrets are never rendered back: an empty password or client key keeps the
    stored one, unless its "clear" box is ticked.
    """

    # Optional in a post (pages and scripts from before it existed): left out,
    # the saved cap (or the default) stays. Its range is the model's.
    history_payload_max_bytes = forms.IntegerField(
        label=Broker._meta.get_field("history_payload_max_bytes").verbose_name,
        help_text=Broker._meta.get_field("history_payload_max_bytes").help_text,
        required=False,
    )

    password = forms.CharField(
        label=_l("password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
    )
    clear_password = forms.BooleanField(
        label=_l("Clear the stored password"), required=False
    )
    client_key = forms.CharField(
        label=_l("client key (PEM)"),
        required=False,
        widget=SecretTextarea(attrs={"rows": 3, "autocomplete": "off"}),
    )
    clear_client_key = forms.BooleanField(
        label=_l("Clear the stored client key"), required=False
    )
    fallback_hosts = forms.CharField(
        label=_l("fallback hosts"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_l("One host:port a line, tried in order when the primary fails."),
    )
    subscribe_all = forms.BooleanField(
        label=_l("Subscribe to # and store every message (as MQTT Explorer does)"),
        required=False,
        initial=True,
    )

    # The page shows these groups as fieldsets, in this order.
    SECTIONS = (
        (
            _l("Connection"),
            ("name", "host", "port", "transport", "ws_path", "protocol", "enabled"),
        ),
        (_l("Authentication"), ("username", "password", "clear_password")),
        (
            _l("TLS"),
            (
                "use_tls",
                "tls_insecure",
                "ca_cert",
                "client_cert",
                "client_key",
                "clear_client_key",
            ),
        ),
        (
            _l("Session"),
            (
                "client_id",
                "clean_start",
                "keepalive",
                "session_expiry_interval",
                "connect_timeout",
                "fallback_hosts",
                "max_payload_bytes",
                "history_payload_max_bytes",
            ),
        ),
        (_l("Subscriptions"), ("subscribe_all", "collect_sys_stats")),
    )

    def clean_history_payload_max_bytes(self) -> int:
        value = self.cleaned_data.get("history_payload_max_bytes")
        return self.instance.history_payload_max_bytes if value is None else value

    class Meta:
        model = Broker
        fields = [
            "name",
            "host",
            "port",
            "transport",
            "ws_path",
            "protocol",
            "enabled",
            "username",
            "password",
            "use_tls",
            "tls_insecure",
            "ca_cert",
            "client_cert",
            "client_key",
            "client_id",
            "clean_start",
            "keepalive",
            "session_expiry_interval",
            "connect_timeout",
            "fallback_hosts",
            "max_payload_bytes",
            "history_payload_max_bytes",
            "collect_sys_stats",
        ]
        widgets = {
            "ca_cert": forms.Textarea(attrs={"rows": 3}),
            "client_cert": forms.Textarea(attrs={"rows": 3}),
        }
        help_texts = {
            "username": _l(
                "The account of the portal's own connection: it receives the "
                "subscriptions' messages and sends what members publish "
                "(Publish tab, API, device commands, republish actions). Give it "
                "an account of its own, not the broker's Dynamic Security admin; "
                "a managed broker's admin account is set under Users & ACL."
            ),
        }

    def __init__(self, *args: Any, product: Product, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.product = product
        stored = self.instance.pk is not None
        # Never put secrets into the page, not even as initial values.
        self.initial.pop("password", None)
        self.initial.pop("client_key", None)
        self.initial["fallback_hosts"] = "\n".join(self.instance.fallback_hosts or ())
        if stored:
            del self.fields["subscribe_all"]
        keep = _l("A value is stored: leave empty to keep it.")
        for name in ("password", "client_key"):
            if stored and getattr(self.instance, name):
                self.fields[name].help_text = keep
            else:
                del self.fields[f"clear_{name}"]
        _bounds_from_model(self)

    @property
    def sections(self) -> list[tuple[str | Promise, list[forms.BoundField]]]:
        """(legend, bound fields) per fieldset, leaving out fields not on this form."""
        return [
            (legend, [self[name] for name in names if name in self.fields])
            for legend, names in self.SECTIONS
            if any(name in self.fields for name in names)
        ]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        # The model's unique constraint involves `product`, which the form lacks.
        clash = Broker.objects.filter(product=self.product, name=name).exclude(
            pk=self.instance.pk
        )
        if clash.exists():
            raise ValidationError(
                _("This product already has a broker named “%s”.") % name
            )
        return name

    def _clean_pem(self, name: str) -> str:
        # Browsers post textareas with CRLF; unchanged PEM must not count as a
        # change (it would be audited and make the runtime reconnect).
        value = (self.cleaned_data.get(name) or "").replace("\r\n", "\n").strip()
        stored = getattr(self.instance, name, "") or ""
        if value and value == stored.replace("\r\n", "\n").strip():
            return stored
        return f"{value}\n" if value else ""

    def clean_ca_cert(self) -> str:
        return self._clean_pem("ca_cert")

    def clean_client_cert(self) -> str:
        return self._clean_pem("client_cert")

    def clean_client_key(self) -> str:
        return self._clean_pem("client_key")

    def clean_fallback_hosts(self) -> list[str]:
        raw = self.cleaned_data.get("fallback_hosts") or ""
        hosts = [line.strip() for line in raw.splitlines() if line.strip()]
        for host in hosts:
            parse_host_port(host)
        return hosts

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns cleaned_data
        for name in ("password", "client_key"):
            if cleaned.get(f"clear_{name}"):
                cleaned[name] = ""
            elif not cleaned.get(name):
                cleaned[name] = getattr(self.instance, name, "") or ""
        return cleaned

    def supplied_secrets(self) -> set[str]:
        """The secrets typed (or cleared) in this submission, not kept from storage:
        only these may go to a changed host (brokers.secret_binding)."""
        return {
            name
            for name in Broker.SECRET_FIELDS
            if self.data.get(self.add_prefix(name))
            or self.cleaned_data.get(f"clear_{name}")
        }

    def service_fields(self) -> dict[str, Any]:
        """The cleaned values the broker services take; a kept secret is left out
        (the service reads a secret passed as given anew)."""
        supplied = self.supplied_secrets()
        return {
            name: self.cleaned_data[name]
            for name in self.Meta.fields
            if name in self.cleaned_data
            and (name not in Broker.SECRET_FIELDS or name in supplied)
        }

    def connection_errors(self) -> dict[str | Promise, list[str]]:
        """Errors that stop a connection test (a missing name does not), by the
        field's label as the form shows it ("" for the form as a whole)."""
        relevant = set(Broker.CONNECTION_FIELDS) | {"__all__"}
        return {
            (capfirst(self[name].label) if name in self.fields else ""): [
                str(error) for error in errors
            ]
            for name, errors in self.errors.items()
            if name in relevant
        }

    def test_feedback(self) -> list[tuple[forms.BoundField, list[str]]]:
        """Each shown field with the errors a connection test reports for it (none
        for the others): a Test re-renders every field's feedback, so an error
        from an earlier Save or Test does not stay."""
        relevant = set(Broker.CONNECTION_FIELDS)
        return [
            (
                field,
                [str(error) for error in self.errors.get(field.name, [])]
                if field.name in relevant
                else [],
            )
            for _legend, fields in self.sections
            for field in fields
        ]

    def connection_settings(self) -> ConnectionSettings:
        """Settings to test, from the form's (possibly unsaved) values."""
        values: dict[str, Any] = {
            name: self.cleaned_data[name]
            for name in ConnectionSettings.__dataclass_fields__
            if name in self.cleaned_data
        }
        values["fallback_hosts"] = tuple(values.get("fallback_hosts") or ())
        return ConnectionSettings(**values)


class SubscriptionForm(forms.ModelForm):
    class Meta:
        model = Subscription
        fields = ["name", "topic_filter", "qos", "store_messages"]
        widgets = {"topic_filter": forms.TextInput()}


class PublishForm(forms.Form):
    """One message to publish; MQTT 5 property fields only for MQTT 5 brokers."""

    topic = forms.CharField(label=_l("Topic"), max_length=65535, strip=False)
    payload = forms.CharField(
        label=_l("Payload"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    encoding = forms.ChoiceField(
        label=_l("Encoding"),
        choices=PayloadEncoding.choices,
        initial=PayloadEncoding.UTF8,
    )
    qos = forms.TypedChoiceField(
        label=_l("QoS"), choices=QOS_CHOICES, coerce=int, initial=0
    )
    retain = forms.BooleanField(label=_l("Retain"), required=False)
    content_type = forms.CharField(label=_l("Content type"), required=False)
    message_expiry_interval = forms.IntegerField(
        label=_l("Message expiry (s)"), required=False, min_value=0
    )
    response_topic = forms.CharField(label=_l("Response topic"), required=False)
    correlation_data = forms.CharField(label=_l("Correlation data"), required=False)
    user_properties = forms.CharField(
        label=_l("User properties"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_l("One key=value a line."),
    )
    # Django's form metaclass moves declared fields into base_fields: this field
    # does not replace BaseForm.template_name, which mypy cannot see.
    template_name = forms.CharField(  # type: ignore[assignment]
        label=_l("Template name"),
        required=False,
        max_length=120,
        help_text=_l("Needed to save the message as a template."),
    )

    V5_FIELDS = (
        "content_type",
        "message_expiry_interval",
        "response_topic",
        "correlation_data",
        "user_properties",
    )

    def __init__(self, *args: Any, broker: Broker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broker = broker
        if broker.protocol != Protocol.MQTT_5:
            for name in self.V5_FIELDS:
                del self.fields[name]

    @property
    def v5_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.V5_FIELDS if name in self.fields]

    def clean_topic(self) -> str:
        topic = self.cleaned_data["topic"]
        validate_topic_name(topic)
        return topic

    def clean_user_properties(self) -> list[list[str]]:
        pairs = []
        for line in (self.cleaned_data.get("user_properties") or "").splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise ValidationError(_("Write each property as key=value."))
            pairs.append([key.strip(), value.strip()])
        return pairs

    def properties(self) -> dict[str, Any]:
        """MQTT 5 properties as the services and templates store them."""
        data = self.cleaned_data
        values: dict[str, Any] = {
            "content_type": data.get("content_type") or "",
            "message_expiry_interval": data.get("message_expiry_interval"),
            "response_topic": data.get("response_topic") or "",
            "correlation_data": data.get("correlation_data") or "",
            "user_properties": data.get("user_properties") or [],
        }
        return {k: v for k, v in values.items() if v not in ("", None, [])}

    def message_fields(self) -> dict[str, Any]:
        """Fields shared by PublishRequest and PublishTemplate."""
        data = self.cleaned_data
        return {
            "topic": data["topic"],
            "payload": data["payload"],
            "encoding": data["encoding"],
            "qos": data["qos"],
            "retain": data["retain"],
            "properties": self.properties(),
        }

    @classmethod
    def initial_from_template(cls, template: Any) -> dict[str, Any]:
        properties = template.properties or {}
        user_properties = properties.get("user_properties") or []
        if isinstance(user_properties, dict):
            user_properties = list(user_properties.items())
        return {
            "topic": template.topic,
            "payload": template.payload,
            "encoding": template.encoding,
            "qos": template.qos,
            "retain": template.retain,
            "template_name": template.name,
            "content_type": properties.get("content_type", ""),
            "message_expiry_interval": properties.get("message_expiry_interval"),
            "response_topic": properties.get("response_topic", ""),
            "correlation_data": properties.get("correlation_data", ""),
            "user_properties": "\n".join(f"{k}={v}" for k, v in user_properties),
        }


class RetainedFilterForm(forms.Form):
    """Which retained messages to ask the broker for."""

    prefix = "retained"

    filter = forms.CharField(
        label=_l("Topic filter"),
        required=False,
        initial="#",
        widget=forms.TextInput(attrs={"placeholder": "#"}),
    )

    def clean_filter(self) -> str:
        value = self.cleaned_data["filter"].strip() or "#"
        validate_topic_filter(value)
        return value


class RetainedClearForm(forms.Form):
    """Clear one topic's retained message, or a whole subtree's."""

    topic = forms.CharField(label=_l("Topic"), strip=False)
    recursive = forms.BooleanField(
        label=_l("With every topic below it"), required=False
    )

    def clean_topic(self) -> str:
        topic = self.cleaned_data["topic"]
        validate_topic_name(topic)
        return topic


# --- Subscriptions tab: the subscription with its actions, without JSON ----------


class SubscriptionEditForm(forms.ModelForm):
    """A subscription's own fields; its actions come from ActionFormSet."""

    class Meta:
        model = Subscription
        fields = [
            "name",
            "description",
            "topic_filter",
            "shared_group",
            "qos",
            "enabled",
            "store_messages",
        ]
        widgets = {
            "topic_filter": forms.TextInput(),
            "description": forms.Textarea(attrs={"rows": 2}),
        }


def _choices(values: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


def action_fields() -> dict[str, tuple[str, ...]]:
    """Which fields of ActionForm each action type stores, in order (each kind
    says so when it registers: brokers.action_kinds)."""
    return {name: kind.fields for name, kind in ACTION_KINDS.items()}


# Header rows of a webhook action: at most this many, and this many blank ones
# under the saved headers to add new ones.
MAX_HEADERS = 20
BLANK_HEADER_ROWS = 2
HEADER_ROW_FIELDS = ("name", "value", "secret", "saved", "auto")


def _compact_header_rows(initial: Mapping[str, Any]) -> dict[str, Any]:
    """Initial values with the named header rows numbered from 0 and blank rows
    left out (a form posted back with "Add action" gets fresh blank rows)."""
    rows = [
        {part: initial.get(f"header_{n}_{part}") for part in HEADER_ROW_FIELDS}
        for n in range(MAX_HEADERS)
        if str(initial.get(f"header_{n}_name") or "").strip()
    ]
    compact = {k: v for k, v in initial.items() if not str(k).startswith("header_")}
    for n, row in enumerate(rows):
        for part, value in row.items():
            compact[f"header_{n}_{part}"] = value
    return compact


class ActionForm(forms.Form):
    """One action: a type and the union of every type's fields. Only the chosen
    type's fields are stored; the model validates them (`actions[i].field`)."""

    type = forms.ChoiceField(label=_l("Action"), choices=[])
    url = forms.CharField(label=_l("URL"), required=False)
    method = forms.ChoiceField(label=_l("Method"), choices=[], required=False)
    # The header rows (header_<n>_*) make this one; it holds their errors.
    headers = forms.CharField(
        label=_l("Headers"), required=False, widget=forms.HiddenInput
    )
    body = forms.CharField(
        label=_l("Body"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_l("A template; empty sends the payload as received."),
    )
    timeout_s = forms.FloatField(
        label=_l("Timeout (s)"), required=False, min_value=0.1, max_value=60
    )
    topic = forms.CharField(label=_l("Topic"), required=False)
    payload = forms.CharField(
        label=_l("Payload"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    qos = forms.TypedChoiceField(
        label=_l("QoS"), choices=QOS_CHOICES, coerce=int, required=False
    )
    retain = forms.BooleanField(label=_l("Retain"), required=False)
    value = forms.CharField(
        label=_l("Value"), required=False, help_text=_l("e.g. {{ payload.temp }}")
    )
    op = forms.ChoiceField(label=_l("Operator"), choices=[], required=False)
    threshold = forms.FloatField(label=_l("Threshold"), required=False)
    severity = forms.ChoiceField(label=_l("Severity"), choices=[], required=False)
    message = forms.CharField(label=_l("Message"), required=False)
    to = forms.CharField(
        label=_l("To"), required=False, help_text=_l("Addresses, comma-separated.")
    )
    subject = forms.CharField(label=_l("Subject"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # These are ChoiceFields; `fields` is typed with the base Field.
        fields = cast(dict[str, forms.ChoiceField], self.fields)
        fields["type"].choices = _choices(action_types())
        for name in ("method", "op", "severity"):
            fields[name].choices = _choices(editor_choices(name))
        # Lower-case names of saved secrets this form no longer holds (the URL
        # changed): their rows show empty, to be typed again.
        self.dropped: set[str] = set()
        if not self.is_bound:
            self.initial = _compact_header_rows(self.initial)
        self.header_count = self._header_row_count()
        for n in range(self.header_count):
            self.fields[f"header_{n}_name"] = forms.CharField(
                label=_l("Header name"), required=False, max_length=200
            )
            # Never rendered back: a saved secret shows as "saved", a new one is
            # typed again after an error.
            self.fields[f"header_{n}_value"] = forms.CharField(
                label=_l("Value"), required=False, max_length=8000
            )
            self.fields[f"header_{n}_secret"] = forms.BooleanField(
                label=_l("Secret"), required=False
            )
            # "1": a saved secret value stands behind this row (empty keeps it).
            self.fields[f"header_{n}_saved"] = forms.CharField(
                required=False, widget=forms.HiddenInput
            )
            # "1": the user has not chosen yet; the name decides (Authorization,
            # Cookie, names with key, token or secret are secrets).
            self.fields[f"header_{n}_auto"] = forms.CharField(
                required=False, widget=forms.HiddenInput
            )

    def _header_row_count(self) -> int:
        """The rows posted (one more blank when all are used), or the saved headers
        and blank rows to add new ones."""
        if self.is_bound:
            posted = [
                n
                for n in range(MAX_HEADERS)
                if self.add_prefix(f"header_{n}_name") in self.data
            ]
            count = len(posted)
            last = self.data.get(self.add_prefix(f"header_{count - 1}_name"), "")
            if count == 0 or str(last).strip():
                count += 1
            return min(count, MAX_HEADERS)
        filled = sum(
            1 for n in range(MAX_HEADERS) if self.initial.get(f"header_{n}_name")
        )
        return min(filled + BLANK_HEADER_ROWS, MAX_HEADERS)

    def header_rows(self) -> list[dict[str, Any]]:
        """The header rows as the editor shows them."""
        rows = []
        for n in range(self.header_count):
            name = self[f"header_{n}_name"]
            auto = self[f"header_{n}_auto"].value()
            if not self.is_bound and auto is None and not name.value():
                auto = "1"
            saved = self[f"header_{n}_saved"].value() == "1" and (
                str(name.value() or "").strip().lower() not in self.dropped
            )
            secret = bool(self[f"header_{n}_secret"].value()) or (
                auto == "1" and secret_by_default(str(name.value() or ""))
            )
            value = self[f"header_{n}_value"].value() or ""
            rows.append(
                {
                    "number": n + 1,
                    "is_secret": secret,
                    # A secret is never written back into the page.
                    "shown_value": "" if secret else value,
                    "name": name,
                    "value": self[f"header_{n}_value"],
                    "secret": self[f"header_{n}_secret"],
                    "saved": saved,
                    # Typed, refused for another reason, and not sent back.
                    "retype": secret and not saved and bool(value),
                    "saved_name": self.add_prefix(f"header_{n}_saved"),
                    "auto": "1" if auto == "1" else "",
                    "auto_name": self.add_prefix(f"header_{n}_auto"),
                }
            )
        return rows

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        headers: dict[str, str] = {}
        secret: list[str] = []
        problems: list[str] = []
        for n in range(self.header_count):
            # A row's own field errors (too long) show with the headers' errors.
            for part, label in (("name", _("name")), ("value", _("value"))):
                for error in self.errors.get(f"header_{n}_{part}", []):
                    problems.append(
                        _("Header %(n)d %(part)s: %(error)s")
                        % {"n": n + 1, "part": label, "error": error}
                    )
            name = (data.get(f"header_{n}_name") or "").strip()
            value = (data.get(f"header_{n}_value") or "").strip()
            if not name:
                if value:
                    problems.append(
                        _("Header %(n)d has a value but no name.") % {"n": n + 1}
                    )
                continue
            is_secret = bool(data.get(f"header_{n}_secret")) or (
                data.get(f"header_{n}_auto") == "1" and secret_by_default(name)
            )
            if is_secret and not value and data.get(f"header_{n}_saved") == "1":
                value = SECRET_MASK  # keep the saved value (only for the same URL)
            elif not value:
                problems.append(_("Header “%s” needs a value.") % name)
                continue
            if name.lower() in {h.lower() for h in headers}:
                problems.append(_("Header “%s” is given twice.") % name)
                continue
            headers[name] = value
            if is_secret:
                secret.append(name)
        if problems and data.get("type") == "webhook":
            for problem in problems:
                self.add_error("headers", problem)
        data["headers"] = headers
        data["secret_headers"] = secret
        return data

    def drop_saved_secrets(self, names: list[str]) -> None:
        """The saved values of these secret headers cannot be kept (no saved action
        calls this URL with them): their rows show empty (the service's error,
        `unkept_message`, says why)."""
        self.dropped.update(name.lower() for name in names)

    def clean_to(self) -> list[str]:
        return [a.strip() for a in self.cleaned_data.get("to", "").split(",") if a]

    def field_names_of_type(self) -> tuple[str, ...]:
        kind = self["type"].value() or "webhook"
        return action_fields().get(str(kind), ())

    def to_action(self) -> dict[str, Any]:
        """The action dict with only the chosen type's fields."""
        data = self.cleaned_data
        kind = data["type"]
        action: dict[str, Any] = {"type": kind}
        for name in action_fields()[kind]:
            value = data.get(name)
            if name == "method":
                value = value or "POST"
            elif name == "timeout_s":
                value = 10 if value is None else value
                value = int(value) if float(value).is_integer() else value
            elif name == "qos":
                value = value or 0
            elif name == "severity":
                value = value or "warning"
            elif name == "headers":
                value = value or {}
                action["secret_headers"] = data.get("secret_headers", [])
            elif name == "to":
                value = [v.strip() for v in value or [] if v.strip()]
            elif value is None:
                continue  # e.g. a missing threshold: the model says so
            action[name] = value
        return action

    @staticmethod
    def initial_from_action(action: dict[str, Any]) -> dict[str, Any]:
        """A stored action as the form's initial values: plain header values as
        they are, secret ones never (the row says a value is saved; left empty,
        saving keeps it)."""
        initial = {
            k: v for k, v in action.items() if k not in ("headers", "secret_headers")
        }
        headers = action.get("headers")
        if isinstance(headers, dict):
            secret = secret_names(action)
            # By name: PostgreSQL's jsonb does not keep the order they were typed in,
            # and the rows must not move between databases or saves.
            ordered = sorted(headers.items(), key=lambda item: str(item[0]).lower())
            for n, (name, value) in enumerate(ordered[:MAX_HEADERS]):
                is_secret = str(name).lower() in secret
                initial[f"header_{n}_name"] = name
                initial[f"header_{n}_value"] = "" if is_secret else value
                initial[f"header_{n}_secret"] = is_secret
                initial[f"header_{n}_saved"] = "1" if is_secret else ""
                initial[f"header_{n}_auto"] = ""
        recipients = action.get("to")
        if isinstance(recipients, list):
            initial["to"] = ", ".join(recipients)
        return initial


# Defaults of an action form added with "Add action".
ACTION_DEFAULTS: dict[str, Any] = {
    "type": "webhook",
    "method": "POST",
    "timeout_s": 10,
    "qos": 0,
    "op": ">",
    "severity": "warning",
}

ActionFormSet = forms.formset_factory(
    ActionForm, extra=0, can_delete=True, max_num=20, validate_max=True
)


class DryRunForm(forms.Form):
    """A sample message to try a subscription's actions on."""

    topic = forms.CharField(label=_l("Topic"), max_length=65535, strip=False)
    payload = forms.CharField(
        label=_l("Payload"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


def action_field_classes(form: ActionForm) -> list[tuple[forms.BoundField, str]]:
    """Each field but `type` with the CSS classes of the types that use it, so the
    stylesheet shows only the chosen type's fields (no JavaScript)."""
    rows = []
    for name in form.fields:
        if name in ("type", "DELETE", "headers") or name.startswith("header_"):
            continue  # the header rows have their own table
        kinds = [kind for kind, names in action_fields().items() if name in names]
        rows.append((form[name], " ".join(f"for-{kind}" for kind in kinds)))
    return rows
