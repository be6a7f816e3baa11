"""Broker pages: list, create/edit with a connection test, detail tabs, publishing,
publish templates and subscriptions.

Every view finds objects through `for_user` (outside the user's products: 404),
checks the role (operator for writes: 403), calls one service and renders. An HTMX
request gets the partial the page swaps in; other requests get the full page or a
redirect, so the pages also work without JavaScript.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseLocation, trigger_client_event

from brokers import selectors, services
from brokers.choices import ControlAction
from brokers.client import PublishError
from brokers.forms import (
    ACTION_DEFAULTS,
    ActionForm,
    ActionFormSet,
    BrokerForm,
    DryRunForm,
    PublishForm,
    SubscriptionEditForm,
    SubscriptionForm,
    action_field_classes,
    apply_errors,
)
from brokers.models import Broker, PublishTemplate, Subscription
from brokers.tabs import (
    BrokerTab,
    broker_tab,
    detail_url,
    fragment_wanted,
    page_context,
    page_response,
    register_tab,
    tab_links,
    tab_template,
)
from brokers.throttles import connection_test_allowed
from mqttadmin.http import PortalRequest
from mqttadmin.models import Product
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

# What to check after a failed connection test, by the kind of failure.
TEST_HINTS: dict[str, Any] = {
    "dns": _l("Check the host name."),
    "refused": _l("Nothing accepts connections there: check host, port and transport."),
    "timeout": _l(
        "Check host, port and firewalls, and whether the port expects TLS or not."
    ),
    "tls": _l("Check the CA certificate, the host name, and whether TLS is on."),
    "bad_credentials": _l("Check the username and password."),
    # Mosquitto refuses a wrong password with "not authorised", not "bad password".
    "not_authorized": _l(
        "Bad username or password, or this user may not connect "
        "(Mosquitto answers both this way)."
    ),
    "protocol": _l("Check the protocol version and the client id."),
    "network": _l("Check the network path to the broker."),
}

# The id of the detail page's status block: HTMX names it in HX-Target.
STATUS_TARGET = "broker-status"


def _can_operate(user: Any, product: Product) -> bool:
    return product.allows(user, Role.OPERATOR)


def _detached(broker: Broker) -> Broker:
    """A copy for a form to validate on: a ModelForm writes the posted values onto
    its instance, while the page and the service's audit diff need the stored ones."""
    return copy.copy(broker)


def _product_for_create(request: PortalRequest) -> Product:
    """The product a new broker goes into: the one named in the request, else the
    current one; operator or more needed there."""
    product_id = request.POST.get("product") or request.GET.get("product")
    if not product_id:
        current = getattr(request, "product", None)
        if current is None:
            raise Http404
        product_id = current.pk
    return get_for_user_or_404(Product, request.user, Role.OPERATOR, pk=product_id)


# --- List ---------------------------------------------------------------------


@login_required
def broker_list(request: PortalRequest) -> HttpResponse:
    """The current product's brokers; an HTMX poll gets only the table body."""
    product = getattr(request, "product", None)
    context = {
        "product": product,
        "rows": selectors.brokers_with_status(request.user, product),
        "can_operate": product is not None and _can_operate(request.user, product),
    }
    template = (
        "brokers/partials/broker_rows.html" if request.htmx else "brokers/list.html"
    )
    return render(request, template, context)


# --- Create / edit / test / delete ----------------------------------------------


@login_required
def broker_create(request: PortalRequest) -> HttpResponse:
    """New broker in the current product; optionally subscribed to `#` at once."""
    product = _product_for_create(request)
    form = BrokerForm(request.POST or None, product=product)
    if request.method == "POST" and form.is_valid():
        try:
            # One transaction: a refused subscription must not leave a broker behind.
            with transaction.atomic():
                broker = services.broker_create(
                    actor=request.user, product=product, **form.service_fields()
                )
                if form.cleaned_data.get("subscribe_all"):
                    services.subscription_create(
                        actor=request.user,
                        broker=broker,
                        name=_("All topics"),
                        topic_filter="#",
                        qos=0,
                        store_messages=True,
                    )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, _("Broker %s created.") % broker.name)
            if request.htmx:
                return HttpResponseLocation(detail_url(broker))
            return redirect(detail_url(broker))
    return render(
        request,
        "brokers/form.html",
        {"form": form, "product": product, "broker": None},
    )


@login_required
def broker_edit(request: PortalRequest, pk: int) -> HttpResponse:
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    form = BrokerForm(
        request.POST or None, instance=_detached(broker), product=broker.product
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.broker_update(
                actor=request.user, broker=broker, **form.service_fields()
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, _("Broker %s saved.") % broker.name)
            if request.htmx:
                return HttpResponseLocation(detail_url(broker))
            return redirect(detail_url(broker))
    return render(
        request,
        "brokers/form.html",
        {"form": form, "product": broker.product, "broker": broker},
    )


@login_required
@require_POST
def broker_test(request: PortalRequest, pk: int | None = None) -> HttpResponse:
    """Try the form's settings once, saved or not.

    For a saved broker, empty secret fields test with the stored secrets. HTMX gets
    the result fragment; without JavaScript the form page comes back with it.
    """
    broker: Broker | None
    if pk is not None:
        broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
        product = broker.product
    else:
        broker = None
        product = _product_for_create(request)
    form = BrokerForm(
        request.POST,
        instance=_detached(broker) if broker is not None else None,
        product=product,
    )
    form.is_valid()
    errors = form.connection_errors()
    result = None
    status = 200
    allowed, wait = connection_test_allowed(request)
    if not allowed:
        # The same per-user budget as the API's (brokers.throttles). htmx does
        # not swap a 4xx answer in, so its fragment says it with a 200.
        status = 200 if request.htmx else 429
        errors = {
            "": [
                _("Too many connection tests: try again in %(seconds)d s.")
                % {"seconds": int(wait or 1) + 1}
            ]
        }
    elif not errors:
        try:
            result = services.broker_test_connection(
                form.connection_settings(),
                broker=broker,
                supplied=form.supplied_secrets(),
            ).as_dict()
        except ValidationError as exc:
            # A stored secret the changed settings would send elsewhere.
            apply_errors(form, exc)
            errors = form.connection_errors()
    context = {
        "form": form,
        "product": product,
        "broker": broker,
        "test_errors": errors,
        "test_result": result,
        "test_hint": TEST_HINTS.get(result["error"], "") if result else "",
    }
    if request.htmx:
        return render(
            request, "brokers/partials/test_result.html", context, status=status
        )
    return render(request, "brokers/form.html", context, status=status)


@login_required
def broker_delete(request: PortalRequest, pk: int) -> HttpResponse:
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    if request.method == "POST":
        name = broker.name
        services.broker_delete(actor=request.user, broker=broker)
        messages.success(request, _("Broker %s deleted.") % name)
        if request.htmx:
            return HttpResponseLocation(reverse("brokers:list"))
        return redirect("brokers:list")
    return render(request, "brokers/confirm_delete.html", {"broker": broker})


# --- Detail -------------------------------------------------------------------


@login_required
def broker_detail(request: PortalRequest, pk: int) -> HttpResponse:
    """The broker page with its tabs (?tab=, see brokers.tabs); an HTMX poll gets
    the status block."""
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    tab = broker_tab(request.GET.get("tab", "overview"))
    if tab is None:
        raise Http404
    context = page_context(request, broker, tab.slug)
    answer = tab.handler(request, broker, context) if tab.handler else {}
    if isinstance(answer, HttpResponse):
        return answer
    if request.htmx:
        return render(request, "brokers/partials/status_block.html", context)
    context.update(answer)
    return render(request, "brokers/detail.html", context)


def _overview_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> dict[str, Any]:
    if request.htmx:
        return {}
    return _subscriptions_context(broker, context["can_operate"])


def _subscriptions_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse:
    context["subscriptions"] = selectors.subscriptions_of(broker)
    return page_response(request, "brokers/partials/subscription_table.html", context)


def _publish_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse | dict[str, Any]:
    if request.htmx:
        return {}
    initial = None
    template_id = request.GET.get("template")
    if template_id and template_id.isdigit():
        template = _template_of(request, broker, int(template_id), Role.VIEWER)
        initial = PublishForm.initial_from_template(template)
    return _publish_context(
        broker, context["can_operate"], PublishForm(initial=initial, broker=broker)
    )


def register_broker_tabs() -> None:
    """The tabs this app serves (AppConfig.ready)."""
    for slug, label, weight, handler in (
        ("overview", _l("Overview"), 10, _overview_tab),
        ("subscriptions", _l("Subscriptions"), 40, _subscriptions_tab),
        ("publish", _l("Publish"), 50, _publish_tab),
        ("advanced", _l("Advanced"), 60, None),
        ("acl", _l("Users & ACL"), 70, None),
    ):
        register_tab(
            BrokerTab(slug, label, weight, f"brokers/tabs/{slug}.html", handler)
        )


@login_required
@require_POST
def broker_control(request: PortalRequest, pk: int) -> HttpResponse:
    """Connect, disconnect or reconnect. HTMX gets the list row or the detail
    page's status block back, whichever it asked to swap."""
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    action = request.POST.get("action", "")
    try:
        broker = services.broker_control(
            actor=request.user, broker=broker, action=action
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if not request.htmx:
            label = ControlAction(action).label
            messages.success(
                request,
                _("%(action)s: %(broker)s")
                % {
                    "action": label,
                    "broker": broker.name,
                },
            )
    if not request.htmx:
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}
        ):
            target = detail_url(broker)
        return redirect(target)
    context = {
        "broker": broker,
        "status": selectors.status_of(broker),
        "row": selectors.BrokerWithStatus(broker, selectors.status_of(broker)),
        "can_operate": True,
    }
    template = (
        "brokers/partials/status_block.html"
        if request.htmx.target == STATUS_TARGET
        else "brokers/partials/broker_row.html"
    )
    response = render(request, template, context)
    return trigger_client_event(response, "brokerChanged", {"id": broker.pk})


# --- Subscriptions ------------------------------------------------------------


def _subscriptions_context(
    broker: Broker, can_operate: bool, form: SubscriptionForm | None = None
) -> dict[str, Any]:
    return {
        "broker": broker,
        "can_operate": can_operate,
        "subscriptions": selectors.subscriptions_of(broker),
        "subscription_form": (
            (form or SubscriptionForm(initial={"qos": 0})) if can_operate else None
        ),
    }


def _subscriptions_response(
    request: PortalRequest, broker: Broker, form: SubscriptionForm | None = None
) -> HttpResponse:
    if request.htmx:
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
    broker = subscription.broker
    services.subscription_delete(actor=request.user, subscription=subscription)
    return _subscriptions_response(request, broker)


# --- Publishing and templates ---------------------------------------------------


def _publish_context(
    broker: Broker, can_operate: bool, form: PublishForm, notice: str = ""
) -> dict[str, Any]:
    return {
        "broker": broker,
        "can_operate": can_operate,
        "publish_form": form if can_operate else None,
        "templates": selectors.publish_templates_of(broker),
        "notice": notice,
    }


def _publish_response(
    request: PortalRequest, broker: Broker, form: PublishForm, notice: str = ""
) -> HttpResponse:
    """The publish panel for HTMX; the whole page (errors kept) or a redirect else."""
    context = _publish_context(broker, True, form, notice)
    if request.htmx:
        return render(request, "brokers/partials/publish.html", context)
    if form.errors:
        context.update(
            {
                "status": selectors.status_of(broker),
                "tab": "publish",
                "tab_template": tab_template("publish"),
                "tabs": tab_links(broker),
            }
        )
        return render(request, "brokers/detail.html", context)
    if notice:
        messages.success(request, notice)
    return redirect(detail_url(broker, "publish"))


def _template_of(
    request: PortalRequest, broker: Broker, tid: int, minimum: Role
) -> PublishTemplate:
    return get_for_user_or_404(
        PublishTemplate, request.user, minimum, pk=tid, broker=broker
    )


@login_required
@require_POST
def broker_publish(request: PortalRequest, pk: int) -> HttpResponse:
    """Publish the form's message, or a saved template's when `template` is posted.

    Everything is validated before connecting: a bad message sends nothing.
    """
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    template_id = request.POST.get("template", "")
    if template_id:
        if not template_id.isdigit():
            raise Http404
        template = _template_of(request, broker, int(template_id), Role.OPERATOR)
        # Bound to the template's values, so errors can be shown next to them.
        form = PublishForm(PublishForm.initial_from_template(template), broker=broker)
        form.is_valid()
        message = services.PublishRequest(
            topic=template.topic,
            payload=template.payload,
            encoding=template.encoding,
            qos=template.qos,
            retain=template.retain,
            properties=template.properties or None,
        )
    else:
        form = PublishForm(request.POST, broker=broker)
        if not form.is_valid():
            return _publish_response(request, broker, form)
        message = services.PublishRequest(**form.message_fields())
    try:
        services.broker_publish(actor=request.user, broker=broker, requests=[message])
    except ValidationError as exc:
        apply_errors(form, exc)
        return _publish_response(request, broker, form)
    except PublishError as exc:
        form.add_error(None, _("Publishing failed: %s") % exc)
        return _publish_response(request, broker, form)
    notice = _("Published to %s.") % message.topic
    return _publish_response(request, broker, form, notice)


@login_required
@require_POST
def template_save(request: PortalRequest, pk: int) -> HttpResponse:
    """Save the publish form as a template; an existing name is overwritten."""
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    form = PublishForm(request.POST, broker=broker)
    if form.is_valid() and not form.cleaned_data["template_name"]:
        form.add_error("template_name", _("Name the template to save it."))
    if not form.is_valid():
        return _publish_response(request, broker, form)
    name = form.cleaned_data["template_name"]
    existing = selectors.publish_templates_of(broker).filter(name=name).first()
    try:
        services.publish_template_save(
            actor=request.user,
            broker=broker,
            template=existing,
            name=name,
            **form.message_fields(),
        )
    except ValidationError as exc:
        apply_errors(form, exc)
        return _publish_response(request, broker, form)
    notice = (_("Template %s updated.") if existing else _("Template %s saved.")) % name
    return _publish_response(request, broker, form, notice)


@login_required
@require_POST
def template_delete(request: PortalRequest, pk: int, tid: int) -> HttpResponse:
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    template = _template_of(request, broker, tid, Role.OPERATOR)
    services.publish_template_delete(actor=request.user, template=template)
    notice = _("Template %s deleted.") % template.name
    return _publish_response(request, broker, PublishForm(broker=broker), notice)


# --- Subscriptions tab: table, editor with actions, dry run -----------------------

# "actions[1].url: message" from validate_actions, by way of the model.
ACTION_ERROR = re.compile(r"^actions\[(\d+)\](?:\.(\w+))?: (.*)$", re.DOTALL)
ACTIONS_PREFIX = "actions"


def _subscription_table_response(
    request: PortalRequest, broker: Broker
) -> HttpResponse:
    """After a toggle or delete: HTMX gets the table, a browser the tab."""
    if not fragment_wanted(request):
        return redirect(detail_url(broker, "subscriptions"))
    context = page_context(request, broker, "subscriptions")
    context["subscriptions"] = selectors.subscriptions_of(broker)
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
    fragment = "brokers/partials/subscription_editor.html"
    template = fragment if fragment_wanted(request) else "brokers/detail.html"
    return render(request, template, context)


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


def _apply_subscription_errors(
    form: SubscriptionEditForm, actions: list[ActionForm], exc: ValidationError
) -> None:
    """The model's errors next to their fields; `actions[i].field: …` next to the
    field of the i-th saved action form."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for field, errors in exc.message_dict.items():
        if field != "actions":
            form.add_error(field if field in form.fields else None, errors)
            continue
        for message in errors:
            match = ACTION_ERROR.match(message)
            if match is None or int(match[1]) >= len(actions):
                form.add_error(None, message)
                continue
            target = actions[int(match[1])]
            name = match[2] if match[2] in target.fields else None
            target.add_error(name, match[3] if name else message)


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
            _apply_subscription_errors(form, kept, exc)
        else:
            messages.success(request, _("Subscription %s saved.") % saved.name)
            url = detail_url(broker, "subscriptions")
            if request.htmx:
                return HttpResponseLocation(url)
            return redirect(url)
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
