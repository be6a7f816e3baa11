"""Broker connections: the list, create/edit with a connection test, delete,
connect/disconnect, and the broker page with the tabs this app serves.

Every view finds objects through `for_user` (outside the user's products: 404),
checks the role (operator for writes: 403), calls one service and renders. An HTMX
request gets the partial the page swaps in; other requests get the full page or a
redirect, so the pages also work without JavaScript.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.functions import Lower
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from brokers import selectors, services
from brokers.choices import ControlAction
from brokers.forms import (
    BrokerForm,
    PublishForm,
    apply_errors,
)
from brokers.models import Broker
from brokers.tabs import (
    BrokerTab,
    broker_tab,
    detail_url,
    page_context,
    page_response,
    register_tab,
)
from brokers.throttles import connection_test_allowed
from brokers.views.common import (
    STATUS_TARGET,
    TEST_HINTS,
    _can_operate,
    _detached,
    _product_for_create,
)
from brokers.views.publish import _publish_context, _template_of
from brokers.views.subscriptions import _subscriptions_context, subscription_rows
from mqttadmin.http import PortalRequest, fragment_wanted, navigate, page_or_fragment
from mqttadmin.lib.units import format_duration
from mqttadmin.listing import SortField, htmx_target, listing_from
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

# What to check after a failed connection test, by the kind of failure.

# --- List ---------------------------------------------------------------------


BROKER_COLUMNS: dict[str, tuple[SortField, ...]] = {
    "status": ("status__state",),
    "name": (Lower("name"),),
    "address": ("host", "port"),
    "messages": ("status__messages_received",),
    "error": (Lower("status__connection_error"),),
}


@login_required
def broker_list(request: PortalRequest) -> HttpResponse:
    """The current product's brokers, sorted and searched as asked; HTMX gets the
    table (a header, the search) or, for the poll, its body."""
    product = getattr(request, "product", None)
    listing = listing_from(
        request,
        columns=BROKER_COLUMNS,
        default="name",
        search=("name", "host"),
        target="broker-table",
        descending_first=("messages",),
    )
    context = {
        "product": product,
        "listing": listing,
        "rows": selectors.brokers_with_status(request.user, product, listing),
        "can_operate": product is not None and _can_operate(request.user, product),
    }
    # A header or the search swaps the whole table; the 5 s poll its body.
    fragment = (
        "brokers/partials/broker_table.html"
        if htmx_target(request) == listing.target
        else "brokers/partials/broker_rows.html"
    )
    return page_or_fragment(
        request,
        "brokers/list.html",
        fragment,
        context,
        target=(listing.target, "broker-rows"),
    )


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
            return navigate(request, detail_url(broker))
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
            return navigate(request, detail_url(broker))
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
        status = 200 if fragment_wanted(request) else 429
        errors = {
            "": [
                _("Too many connection tests: try again in %(wait)s.")
                % {"wait": format_duration(int(wait or 1) + 1)}
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
    return page_or_fragment(
        request,
        "brokers/form.html",
        "brokers/partials/test_answer.html",
        context,
        status=status,
    )


@login_required
def broker_delete(request: PortalRequest, pk: int) -> HttpResponse:
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    if request.method == "POST":
        name = broker.name
        services.broker_delete(actor=request.user, broker=broker)
        messages.success(request, _("Broker %s deleted.") % name)
        return navigate(request, reverse("brokers:list"))
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
    context.update(answer)
    return page_or_fragment(
        request,
        "brokers/detail.html",
        "brokers/partials/status_block.html",
        context,
        target=STATUS_TARGET,
    )


def _overview_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> dict[str, Any]:
    if fragment_wanted(request, STATUS_TARGET):
        return {}
    return _subscriptions_context(broker, context["can_operate"])


def _subscriptions_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse:
    subscription_rows(request, broker, context)
    return page_response(request, "brokers/partials/subscription_table.html", context)


def _publish_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse | dict[str, Any]:
    if fragment_wanted(request, STATUS_TARGET):
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
        if not fragment_wanted(request):
            label = ControlAction(action).label
            messages.success(
                request,
                _("%(action)s: %(broker)s")
                % {
                    "action": label,
                    "broker": broker.name,
                },
            )
    if not fragment_wanted(request):
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
        if fragment_wanted(request, STATUS_TARGET)
        else "brokers/partials/broker_row.html"
    )
    response = render(request, template, context)
    return trigger_client_event(response, "brokerChanged", {"id": broker.pk})
