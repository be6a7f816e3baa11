"""Forms of the Users & ACL tab. Secrets are never rendered back: an empty password
keeps the stored one."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _l

from acl.choices import Access
from acl.models import (
    ManagedBroker,
    MqttRole,
    validate_managed_client_id,
    validate_managed_username,
    validate_role_name,
    validate_rule_filter,
)

PASSWORD_WIDGET = forms.PasswordInput(
    render_value=False, attrs={"autocomplete": "new-password"}
)


class ManagementForm(forms.ModelForm):
    """How the broker is managed. Host settings (paths, commands) are read-only for
    anyone but superusers."""

    management_password = forms.CharField(
        label=_l("admin password"),
        required=False,
        strip=False,
        widget=PASSWORD_WIDGET,
        help_text=_l("Leave empty to keep the stored password."),
    )
    clear_management_password = forms.BooleanField(
        label=_l("Clear the stored admin password"), required=False
    )

    class Meta:
        model = ManagedBroker
        fields = [
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

    def __init__(
        self, *args: Any, can_change_host: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("management_password", None)
        if not can_change_host:
            for name in ManagedBroker.HOST_FIELDS:
                self.fields[name].disabled = True
                self.fields[name].help_text = _l("Only superusers change this.")

    def _post_clean(self) -> None:
        # Model validation must see the stored password when the field is empty.
        if not self.cleaned_data.get("management_password"):
            self.cleaned_data.pop("management_password", None)
        # django-stubs leave out this private hook of BaseModelForm (Django calls it
        # after clean() to run model validation).
        super()._post_clean()  # type: ignore[misc]

    def service_fields(self) -> dict[str, Any]:
        data = {
            name: self.cleaned_data[name]
            for name in self.Meta.fields
            if name in self.cleaned_data and name != "management_password"
        }
        if self.cleaned_data.get("clear_management_password"):
            data["management_password"] = ""
        elif self.cleaned_data.get("management_password"):
            data["management_password"] = self.cleaned_data["management_password"]
        return data


class MqttUserForm(forms.Form):
    """Create or change an MQTT user; on edit the username is fixed and an empty
    password keeps the current one."""

    username = forms.CharField(
        label=_l("username"), max_length=256, validators=[validate_managed_username]
    )
    password = forms.CharField(
        label=_l("password"),
        required=False,
        strip=False,
        max_length=1024,
        widget=PASSWORD_WIDGET,
    )
    roles = forms.ModelMultipleChoiceField(
        label=_l("roles"),
        queryset=MqttRole.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        to_field_name="name",
    )
    enabled = forms.BooleanField(label=_l("enabled"), required=False, initial=True)
    client_id = forms.CharField(
        label=_l("client id"),
        max_length=128,
        required=False,
        validators=[validate_managed_client_id],
        help_text=_l("When set, this user may connect only with this client id."),
    )

    def __init__(
        self, *args: Any, broker: Any, editing: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.editing = editing
        roles = cast(forms.ModelMultipleChoiceField, self.fields["roles"])
        roles.queryset = MqttRole.objects.filter(broker=broker)
        if editing:
            self.fields["username"].disabled = True
            self.fields["password"].help_text = _l("Leave empty to keep the password.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.editing and not data.get("password"):
            self.add_error("password", _l("A new user needs a password."))
        return data

    def service_fields(self) -> dict[str, Any]:
        data = {
            "enabled": self.cleaned_data["enabled"],
            "client_id": self.cleaned_data["client_id"],
            "roles": list(self.cleaned_data["roles"]),
        }
        if not self.editing:
            data["username"] = self.cleaned_data["username"]
        data["password"] = self.cleaned_data.get("password") or None
        return data


class MqttRoleForm(forms.Form):
    name = forms.CharField(
        label=_l("name"), max_length=120, validators=[validate_role_name]
    )


class RuleForm(forms.Form):
    topic = forms.CharField(
        label=_l("topic filter"),
        max_length=1024,
        strip=False,
        validators=[validate_rule_filter],
    )
    access = forms.ChoiceField(
        label=_l("access"), choices=Access.choices, initial=Access.READ
    )
    priority = forms.IntegerField(label=_l("priority"), initial=0)


class BaseRuleFormSet(forms.BaseFormSet):
    def rules(self) -> tuple[list[dict[str, Any]], list[forms.Form]]:
        """The rows kept (not deleted, not left empty) and the forms they came from."""
        kept: list[dict[str, Any]] = []
        forms_kept: list[forms.Form] = []
        for form in self.forms:
            # _should_delete_form is BaseFormSet's own test (can_delete and the
            # DELETE box); django-stubs leave out this private method.
            if not form.has_changed() or self._should_delete_form(form):  # type: ignore[attr-defined]
                continue
            kept.append(
                {
                    name: form.cleaned_data[name]
                    for name in ("topic", "access", "priority")
                }
            )
            forms_kept.append(form)
        return kept, forms_kept


# django-stubs type formset_factory's result as the base BaseFormSet, whatever
# `formset` says; it is a subclass of BaseRuleFormSet.
RuleFormSet = cast(
    type[BaseRuleFormSet],
    forms.formset_factory(RuleForm, formset=BaseRuleFormSet, extra=1, can_delete=True),
)


def apply_rule_errors(
    form: forms.Form, rule_forms: list[forms.Form], exc: ValidationError
) -> None:
    """Put a service's errors next to the fields (`rules[2].topic` on its row)."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for key, messages in exc.message_dict.items():
        if key.startswith("rules[") and "]." in key:
            index_text, _sep, name = key[len("rules[") :].partition("].")
            if index_text.isdigit() and int(index_text) < len(rule_forms):
                target = rule_forms[int(index_text)]
                target.add_error(name if name in target.fields else None, messages)
                continue
        form.add_error(key if key in form.fields else None, messages)
