"""Subscriptions: the Overview's list and the Subscriptions tab (table, editor with
actions, dry run)."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models.functions import Lower
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from django.views.decorators.http import require_POST

from brokers import selectors, services
from brokers.action_headers import unkept_secrets
from brokers.forms import (
    ACTION_DEFAULTS,
    ActionForm,
    ActionFormSet,
    DryRunForm,
    SubscriptionEditForm,
    SubscriptionForm,
    action_field_classes,
    apply_errors,
)
from brokers.models import Broker, Subscription
from brokers.owners import owner_of, with_owners
from brokers.tabs import (
    detail_url,
    page_context,
)
from mqttadmin.http import PortalRequest, fragment_wanted, navigate, page_or_fragment
from mqttadmin.listing import Listing, SortField, listing_from
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

# What to check after a failed connection test, by the kind of failure.

# --- Subscriptions ------------------------------------------------------------


SUBSCRIPTION_COLUMNS: dict[str, tuple[SortField, ...]] = {
    "name": (Lower("name"),),
    "filter": ("topic_filter",),
    "qos": ("qos",),
    "enabled": ("enabled",),
    "received": ("messages_received",),
    "failed": ("actions_failed",),
    "last": ("last_message_at",),
}


def subscription_listing(request: PortalRequest, broker: Broker) -> Listing:
    """The Subscriptions tab's sort and search; the toggle and delete posts carry
    them in their query, so the table they answer with keeps them."""
    return listing_from(
        request,
        columns=SUBSCRIPTION_COLUMNS,
        default="name",
        search=("name", "topic_filter", "description"),
        target="subscription-table",
        path=reverse("brokers:detail", args=[broker.pk]),
        descending_first=("received", "failed", "last"),
    )


def subscription_rows(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> None:
    """The table's rows and listing into `context`."""
    listing = subscription_listing(request, broker)
    listing = dataclasses.replace(
        listing, kept={**listing.kept, "tab": "subscriptions"}
    )
    context["listing"] = listing
    context["subscriptions"] = with_owners(
        listing.apply(selectors.subscriptions_of(broker))
    )


def _subscriptions_context(
    broker: Broker, can_operate: bool, form: SubscriptionForm | None = None
) -> dict[str, Any]:
    return {
        "broker": broker,
        "can_operate": can_operate,
        "subscriptions": with_owners(selectors.subscriptions_of(broker)),
        "subscription_form": (
            (form or SubscriptionForm(initial={"qos": 0})) if can_operate else None
        ),
    }


def _subscriptions_response(
    request: PortalRequest, broker: Broker, form: SubscriptionForm | None = None
) -> HttpResponse:
    if fragment_wanted(request):
        return render(
            request,
            "brokers/partials/subscriptions.html",
            _subscriptions_context(broker, True, form),
        )
    if form is not None and form.errors:
        for error in form.errors.values():
            messages.error(request, " ".join(str(message) for message in error))
    return redirect(detail_url(broker))


@login_required
@require_POST
def subscription_create(request: PortalRequest, pk: int) -> HttpResponse:
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    form: SubscriptionForm | None
    form = SubscriptionForm(request.POST)
    if form.is_valid():
        try:
            services.subscription_create(
                actor=request.user, broker=broker, **form.cleaned_data
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            form = None
    return _subscriptions_response(request, broker, form)


def _subscription_of(request: PortalRequest, pk: int, sid: int) -> Subscription:
    return get_for_user_or_404(
        Subscription, request.user, Role.OPERATOR, pk=sid, broker_id=pk
    )


def _managed_elsewhere(
    request: PortalRequest, subscription: Subscription
) -> HttpResponse | None:
    """A subscription a device keeps in step is changed on the device's page: the
    Subscriptions tab says so (and links there) instead of editing or deleting it."""
    owner = owner_of(subscription)
    if owner is None:
        return None
    messages.error(
        request,
        format_html(
            _(
                "The subscription {name} is managed by the device "
                '<a href="{url}">{device}</a>: change the device instead.'
            ),
            name=subscription.name,
            device=owner.label,
            url=owner.url,
        ),
    )
    return navigate(request, detail_url(subscription.broker, "subscriptions"))


@login_required
@require_POST
def subscription_toggle(request: PortalRequest, pk: int, sid: int) -> HttpResponse:
    subscription = _subscription_of(request, pk, sid)
    services.subscription_update(
        actor=request.user, subscription=subscription, enabled=not subscription.enabled
    )
    return _subscriptions_response(request, subscription.broker)


@login_required
@require_POST
def subscription_delete(request: PortalRequest, pk: int, sid: int) -> HttpResponse:
    subscription = _subscription_of(request, pk, sid)
    if refused := _managed_elsewhere(request, subscription):
        return refused
    broker = subscription.broker
    services.subscription_delete(actor=request.user, subscription=subscription)
    return _subscriptions_response(request, broker)


# --- Subscriptions tab: table, editor with actions, dry run -----------------------

# "actions[1].url: message" from validate_actions, by way of the model.
ACTION_ERROR = re.compile(r"^actions\[(\d+)\](?:\.(\w+))?: (.*)$", re.DOTALL)
ACTIONS_PREFIX = "actions"
# Labels of fields the model names but the editor shows differently.
FIELD_LABELS = {"headers": _l("Headers"), "filter": _l("Topic filter")}


def _subscription_table_response(
    request: PortalRequest, broker: Broker
) -> HttpResponse:
    """After a toggle or delete: HTMX gets the table, a browser the tab."""
    if not fragment_wanted(request):
        return redirect(detail_url(broker, "subscriptions"))
    context = page_context(request, broker, "subscriptions")
    subscription_rows(request, broker, context)
    return render(request, "brokers/partials/subscription_table.html", context)


@login_required
@require_POST
def subscription_tab_toggle(request: PortalRequest, pk: int, sid: int) -> HttpResponse:
    subscription = _subscription_of(request, pk, sid)
    services.subscription_update(
        actor=request.user, subscription=subscription, enabled=not subscription.enabled
    )
    return _subscription_table_response(request, subscription.broker)


@login_required
@require_POST
def subscription_tab_delete(request: PortalRequest, pk: int, sid: int) -> HttpResponse:
    subscription = _subscription_of(request, pk, sid)
    if refused := _managed_elsewhere(request, subscription):
        return refused
    broker = subscription.broker
    services.subscription_delete(actor=request.user, subscription=subscription)
    if not fragment_wanted(request):
        messages.success(request, _("Subscription %s deleted.") % subscription.name)
    return _subscription_table_response(request, broker)


def _sample_topic(subscription: Subscription | None) -> str:
    """A topic the filter matches, to start the dry run with."""
    if subscription is None:
        return ""
    return subscription.match_filter.replace("+", "x").replace("#", "test")


def _outcome_rows(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Dry-run outcomes with their details as (name, text) pairs for the page."""
    if result is None:
        return []
    rows = []
    for outcome in result["actions"]:
        details = [
            (key, ", ".join(map(str, value)) if isinstance(value, list) else value)
            for key, value in outcome.items()
            if key not in ("index", "type", "ok", "error")
        ]
        rows.append({**outcome, "details": details})
    return rows


def _editor_response(
    request: PortalRequest,
    broker: Broker,
    subscription: Subscription | None,
    form: SubscriptionEditForm,
    formset: Any,
    title: str = "",
    dry_run_form: DryRunForm | None = None,
    dry_run: dict[str, Any] | None = None,
) -> HttpResponse:
    context = page_context(request, broker, "subscriptions")
    form_url = (
        reverse("brokers:subscription-edit", args=[broker.pk, subscription.pk])
        if subscription is not None
        else reverse("brokers:subscription-new", args=[broker.pk])
    )
    context.update(
        {
            "editing": True,
            "subscription": subscription,
            "editor_title": title
            or (subscription.name if subscription else _("New subscription")),
            "sub_form": form,
            "action_formset": formset,
            "action_rows": [(f, action_field_classes(f)) for f in formset.forms],
            "form_url": form_url,
            "dry_run_form": dry_run_form
            or DryRunForm(initial={"topic": _sample_topic(subscription)}),
            "dry_run": dry_run,
            "outcomes": _outcome_rows(dry_run),
        }
    )
    return page_or_fragment(
        request,
        "brokers/detail.html",
        "brokers/partials/subscription_editor.html",
        context,
    )


def _with_one_more_action(
    data: QueryDict, subscription: Subscription | None
) -> tuple[SubscriptionEditForm, Any]:
    """The posted forms again, unbound (no errors yet), plus an empty action;
    actions ticked for deletion are dropped."""
    posted = SubscriptionEditForm(data)
    form = SubscriptionEditForm(
        instance=subscription,
        initial={name: posted[name].value() for name in posted.fields},
    )
    posted_actions = ActionFormSet(data, prefix=ACTIONS_PREFIX)
    initial = [
        {name: action[name].value() for name in action.fields if name != "DELETE"}
        for action in posted_actions.forms
        if not action["DELETE"].value()
    ]
    initial.append(dict(ACTION_DEFAULTS))
    return form, ActionFormSet(initial=initial, prefix=ACTIONS_PREFIX)


def _field_label(form: Any, name: str | None) -> str:
    """How the editor names a field in an error: its label, not its key."""
    if not name:
        return ""
    if name in form.fields:
        return str(form.fields[name].label or name)
    return str(FIELD_LABELS.get(name, name))


def _apply_subscription_errors(
    form: SubscriptionEditForm, actions: list[ActionForm], exc: ValidationError
) -> None:
    """The model's errors next to their fields; `actions[i].field: …` next to the
    field of the i-th saved action form, else on top of that action, named by the
    field's label. Actions count from 1, as the editor shows them."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for field, errors in exc.message_dict.items():
        if field != "actions":
            if field in form.fields:
                form.add_error(field, errors)
            else:
                label = _field_label(form, field)
                form.add_error(None, [f"{label}: {error}" for error in errors])
            continue
        for message in errors:
            match = ACTION_ERROR.match(message)
            if match is None or int(match[1]) >= len(actions):
                form.add_error(None, _readable_action_error(message, match))
                continue
            target = actions[int(match[1])]
            if match[2] in target.fields:
                target.add_error(match[2], match[3])
            elif match[2]:
                target.add_error(None, f"{_field_label(target, match[2])}: {match[3]}")
            else:
                target.add_error(None, match[3])


def _readable_action_error(message: str, match: re.Match[str] | None) -> str:
    """An action error with no form to show it at: "Action 2 · URL: …"."""
    if match is None:
        return message
    number = _("Action %d") % (int(match[1]) + 1)
    if match[2]:
        field = _field_label(ActionForm(), match[2])
        return f"{number} · {field}: {match[3]}"
    return f"{number}: {match[3]}"


def _drop_unkept_secrets(
    actions: list[ActionForm], subscription: Subscription | None
) -> None:
    """Secret header values that cannot be kept (the URL changed): their rows show
    empty, so the user types them for the new URL (the service's error says why)."""
    stored = subscription.actions if subscription is not None else []
    wanted = [form.to_action() for form in actions]
    for index, names in unkept_secrets(wanted, stored).items():
        actions[index].drop_saved_secrets(names)


@login_required
def subscription_edit(
    request: PortalRequest, pk: int, sid: int | None = None
) -> HttpResponse:
    """Create (no sid) or change a subscription with its ordered actions.

    "Add action" posts the form back and gets it with one more empty action; "Save"
    stores it through the service, whose errors show next to their action.
    """
    if sid is None:
        broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
        subscription = None
    else:
        subscription = _subscription_of(request, pk, sid)
        if refused := _managed_elsewhere(request, subscription):
            return refused
        broker = subscription.broker
    title = subscription.name if subscription else ""
    if request.method != "POST":
        form = SubscriptionEditForm(
            instance=subscription, initial=None if subscription else {"qos": 0}
        )
        formset = ActionFormSet(
            initial=[
                ActionForm.initial_from_action(a)
                for a in (subscription.actions if subscription else [])
            ],
            prefix=ACTIONS_PREFIX,
        )
        return _editor_response(request, broker, subscription, form, formset, title)
    if "add_action" in request.POST:
        form, formset = _with_one_more_action(request.POST, subscription)
        return _editor_response(request, broker, subscription, form, formset, title)
    form = SubscriptionEditForm(
        request.POST, instance=copy.copy(subscription) if subscription else None
    )
    formset = ActionFormSet(request.POST, prefix=ACTIONS_PREFIX)
    if form.is_valid() and formset.is_valid():
        kept = [
            f
            for f in formset.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        fields = {**form.cleaned_data, "actions": [f.to_action() for f in kept]}
        try:
            if subscription is None:
                saved = services.subscription_create(
                    actor=request.user, broker=broker, **fields
                )
            else:
                saved = services.subscription_update(
                    actor=request.user, subscription=subscription, **fields
                )
        except ValidationError as exc:
            _drop_unkept_secrets(kept, subscription)
            _apply_subscription_errors(form, kept, exc)
        else:
            messages.success(request, _("Subscription %s saved.") % saved.name)
            # The whole broker page on its Subscriptions tab, with the message.
            return navigate(request, detail_url(broker, "subscriptions"))
    return _editor_response(request, broker, subscription, form, formset, title)


@login_required
@require_POST
def subscription_dry_run(request: PortalRequest, pk: int, sid: int) -> HttpResponse:
    """What the saved actions would do with a sample message; nothing is sent."""
    subscription = _subscription_of(request, pk, sid)
    form = DryRunForm(request.POST)
    result = None
    if form.is_valid():
        result = services.subscription_dry_run(
            subscription=subscription,
            topic=form.cleaned_data["topic"],
            payload=form.cleaned_data["payload"].encode("utf-8"),
        )
    if fragment_wanted(request):
        context = {
            "broker": subscription.broker,
            "subscription": subscription,
            "dry_run_form": form,
            "dry_run": result,
            "outcomes": _outcome_rows(result),
        }
        return render(request, "brokers/partials/subscription_dry_run.html", context)
    editor = SubscriptionEditForm(instance=subscription)
    formset = ActionFormSet(
        initial=[ActionForm.initial_from_action(a) for a in subscription.actions],
        prefix=ACTIONS_PREFIX,
    )
    return _editor_response(
        request,
        subscription.broker,
        subscription,
        editor,
        formset,
        dry_run_form=form,
        dry_run=result,
    )
