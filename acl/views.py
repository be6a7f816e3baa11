"""The broker page's "Users & ACL" tab: MQTT users, roles and rules, management
settings, sync with drift, export and lifecycle.

Members see the tab; only product admins (and superusers) change anything, which is
stricter than the other broker pages (operators manage connections, but MQTT
credentials and ACLs need an admin). Objects outside the user's products are 404.
Toggles, deletes, sync and lifecycle answer HTMX with the panel fragment; without
JavaScript every form posts and the page comes back.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from acl import selectors, services
from acl.choices import LifecycleAction, Management
from acl.forms import (
    ManagementForm,
    MqttRoleForm,
    MqttUserForm,
    RuleFormSet,
    apply_rule_errors,
)
from acl.lifecycle import LifecycleUnavailable
from acl.models import MqttRole, MqttUser
from brokers.forms import apply_errors
from brokers.models import Broker
from brokers.tabs import page_context
from mqttadmin.http import PortalRequest, fragment_wanted
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

TAB = "acl"
PANEL = "acl/partials/panel.html"


def _tab_url(broker: Broker) -> str:
    return reverse("acl:tab", args=[broker.pk])


def _page_context(request: PortalRequest, broker: Broker) -> dict[str, Any]:
    """What brokers/detail.html needs around the tab."""
    return {
        **page_context(request, broker, TAB),
        "can_admin": broker.product.allows(request.user, Role.ADMIN),
    }


def _panel_context(request: PortalRequest, broker: Broker) -> dict[str, Any]:
    managed = services.managed_of(broker)
    return {
        "managed": managed,
        "is_managed": managed.is_managed,
        "is_dynsec": managed.management == Management.DYNSEC,
        "users": selectors.users_of(broker),
        "roles": selectors.roles_of(broker),
        "lifecycle_actions": LifecycleAction.choices,
    }


def _render(
    request: PortalRequest,
    broker: Broker,
    template: str,
    context: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The fragment for HTMX, else the broker page with the tab showing it."""
    full = {**_page_context(request, broker), **(context or {})}
    full["acl_template"] = template
    if fragment_wanted(request):
        return render(request, template, full, status=status)
    return render(request, "brokers/detail.html", full, status=status)


def _panel(request: PortalRequest, broker: Broker, **extra: Any) -> HttpResponse:
    context = _panel_context(request, broker)
    context.update(extra)
    return _render(request, broker, PANEL, context)


def _after_change(
    request: PortalRequest, broker: Broker, done: str, result: services.SyncResult
) -> HttpResponse:
    """Say what was done and how applying it went: the panel (HTMX) or a redirect."""
    if fragment_wanted(request):
        return _panel(request, broker, notice=done, sync_result=result)
    messages.success(request, done)
    if result.applied:
        messages.success(request, _("Applied to the broker."))
    else:
        messages.error(request, _("Not applied to the broker: %s") % result.error)
    return redirect(_tab_url(broker))


def _broker(request: PortalRequest, pk: int, minimum: Role = Role.VIEWER) -> Broker:
    return get_for_user_or_404(Broker, request.user, minimum, pk=pk)


# --- The tab --------------------------------------------------------------------


@login_required
def acl_tab(request: PortalRequest, pk: int) -> HttpResponse:
    """Users, roles and the management summary."""
    return _panel(request, _broker(request, pk))


# --- Users ------------------------------------------------------------------------


def _user_of(request: PortalRequest, pk: int, uid: int) -> MqttUser:
    return get_for_user_or_404(MqttUser, request.user, Role.ADMIN, pk=uid, broker_id=pk)


@login_required
def user_form(request: PortalRequest, pk: int, uid: int | None = None) -> HttpResponse:
    """Create a user, or change one (an empty password keeps it)."""
    broker = _broker(request, pk, Role.ADMIN)
    user = _user_of(request, pk, uid) if uid is not None else None
    initial = None
    if user is not None:
        initial = {
            "username": user.username,
            "enabled": user.enabled,
            "client_id": user.client_id,
            "roles": list(user.roles.all()),
        }
    form = MqttUserForm(
        request.POST or None,
        initial=initial,
        broker=broker,
        editing=user is not None,
    )
    if request.method == "POST" and form.is_valid():
        fields = form.service_fields()
        try:
            if user is None:
                user, result = services.mqtt_user_create(
                    actor=request.user, broker=broker, **fields
                )
                done = _("User %s created.") % user.username
            else:
                user, result = services.mqtt_user_update(
                    actor=request.user, user=user, **fields
                )
                done = _("User %s saved.") % user.username
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return _after_change(request, broker, done, result)
    return _render(
        request,
        broker,
        "acl/partials/user_form.html",
        {"form": form, "mqtt_user": user},
    )


@login_required
@require_POST
def user_toggle(request: PortalRequest, pk: int, uid: int) -> HttpResponse:
    """Enable or disable a user (with Dynamic Security, disabling kicks it)."""
    user = _user_of(request, pk, uid)
    user, result = services.mqtt_user_update(
        actor=request.user, user=user, enabled=not user.enabled
    )
    done = (_("User %s enabled.") if user.enabled else _("User %s disabled.")) % (
        user.username
    )
    return _after_change(request, user.broker, done, result)


@login_required
@require_POST
def user_delete(request: PortalRequest, pk: int, uid: int) -> HttpResponse:
    user = _user_of(request, pk, uid)
    broker, name = user.broker, user.username
    result = services.mqtt_user_delete(actor=request.user, user=user)
    return _after_change(request, broker, _("User %s deleted.") % name, result)


# --- Roles ------------------------------------------------------------------------


def _role_of(request: PortalRequest, pk: int, rid: int) -> MqttRole:
    return get_for_user_or_404(MqttRole, request.user, Role.ADMIN, pk=rid, broker_id=pk)


def _grown(data: Any) -> Any:
    """The posted rule rows plus one empty row ("Add a rule")."""
    data = data.copy()
    key = "rules-TOTAL_FORMS"
    data[key] = str(int(data.get(key, "0") or 0) + 1)
    return data


@login_required
def role_form(request: PortalRequest, pk: int, rid: int | None = None) -> HttpResponse:
    """Create or change a role and its rule rows (add and remove rows)."""
    broker = _broker(request, pk, Role.ADMIN)
    role = _role_of(request, pk, rid) if rid is not None else None
    if request.method == "POST":
        adding_row = "add_rule" in request.POST
        data = _grown(request.POST) if adding_row else request.POST
        form = MqttRoleForm(data)
        formset = RuleFormSet(data, prefix="rules")
        if not adding_row and form.is_valid() and formset.is_valid():
            rules, rule_forms = formset.rules()
            try:
                if role is None:
                    role, result = services.mqtt_role_create(
                        actor=request.user,
                        broker=broker,
                        name=form.cleaned_data["name"],
                        rules=rules,
                    )
                    done = _("Role %s created.") % role.name
                else:
                    role, result = services.mqtt_role_update(
                        actor=request.user,
                        role=role,
                        name=form.cleaned_data["name"],
                        rules=rules,
                    )
                    done = _("Role %s saved.") % role.name
            except ValidationError as exc:
                apply_rule_errors(form, rule_forms, exc)
            else:
                return _after_change(request, broker, done, result)
    else:
        initial_rules = (
            [
                {"topic": r.topic, "access": r.access, "priority": r.priority}
                for r in role.rules.order_by("-priority", "id")
            ]
            if role is not None
            else []
        )
        form = MqttRoleForm(initial={"name": role.name} if role else None)
        formset = RuleFormSet(initial=initial_rules, prefix="rules")
    return _render(
        request,
        broker,
        "acl/partials/role_form.html",
        {"form": form, "formset": formset, "role": role},
    )


@login_required
@require_POST
def role_delete(request: PortalRequest, pk: int, rid: int) -> HttpResponse:
    role = _role_of(request, pk, rid)
    broker, name = role.broker, role.name
    result = services.mqtt_role_delete(actor=request.user, role=role)
    return _after_change(request, broker, _("Role %s deleted.") % name, result)


# --- Management, sync, export, lifecycle ----------------------------------------


@login_required
def management_form(request: PortalRequest, pk: int) -> HttpResponse:
    """How the broker is managed and reloaded (host settings: superusers)."""
    broker = _broker(request, pk, Role.ADMIN)
    managed = services.managed_of(broker)
    form = ManagementForm(
        request.POST or None,
        instance=services.managed_of(broker),  # a copy: the form writes onto it
        can_change_host=services.can_change_host_settings(request.user),
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.management_update(
                actor=request.user, broker=broker, **form.service_fields()
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(
                request,
                _("Management settings saved. Sync to apply users and roles."),
            )
            return redirect(_tab_url(broker))
    return _render(
        request,
        broker,
        "acl/partials/management_form.html",
        {"form": form, "managed": managed},
    )


@login_required
@require_POST
def acl_sync(request: PortalRequest, pk: int) -> HttpResponse:
    """Re-apply everything and show the drift found (prune when asked)."""
    broker = _broker(request, pk, Role.ADMIN)
    report = services.acl_sync(
        actor=request.user, broker=broker, prune=request.POST.get("prune") == "on"
    )
    return _panel(request, broker, sync_report=report, sync_result=report.sync)


@login_required
def acl_export(request: PortalRequest, pk: int) -> HttpResponse:
    """What the broker gets: files or Dynamic Security commands, hashes only."""
    broker = _broker(request, pk, Role.ADMIN)
    export = services.acl_export(broker)
    commands = export.get("commands") or (export.get("dynsec") or {}).get("commands")
    return _render(
        request,
        broker,
        "acl/partials/export.html",
        {
            "export": export,
            "files": export if export["backend"] == "files" else export.get("files"),
            "commands_json": json.dumps(commands, indent=2) if commands else "",
        },
    )


@login_required
@require_POST
def lifecycle(request: PortalRequest, pk: int) -> HttpResponse:
    """Reload or restart the broker with its method; the outcome is shown."""
    broker = _broker(request, pk, Role.ADMIN)
    action = request.POST.get("action", "")
    if action not in LifecycleAction.values:
        return _panel(
            request, broker, lifecycle_error=_("Action must be reload or restart.")
        )
    try:
        outcome = services.broker_lifecycle(
            actor=request.user, broker=broker, action=action
        )
    except LifecycleUnavailable as exc:
        return _panel(request, broker, lifecycle_error=str(exc))
    return _panel(request, broker, lifecycle_outcome=outcome)
