"""Broker pages: list, create/edit with a connection test, detail tabs, publishing,
publish templates and subscriptions.

Every view finds objects through `for_user` (outside the user's products: 404),
checks the role (operator for writes: 403), calls one service and renders. An HTMX
request gets the partial the page swaps in; other requests get the full page or a
redirect, so the pages also work without JavaScript.
"""

from __future__ import annotations

import copy
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
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
from brokers.forms import BrokerForm, PublishForm, SubscriptionForm, apply_errors
from brokers.models import Broker, PublishTemplate, Subscription
from mqttadmin.models import Product
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

# Tabs of the broker page, in order; later features append theirs.
TABS: list[tuple[str, Any]] = [
    ("overview", _l("Overview")),
    ("publish", _l("Publish")),
    ("advanced", _l("Advanced")),
]

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


def _detail_url(broker: Broker, tab: str = "overview") -> str:
    url = reverse("brokers:detail", args=[broker.pk])
    return url if tab == "overview" else f"{url}?tab={tab}"


def _detached(broker: Broker) -> Broker:
    """A copy for a form to validate on: a ModelForm writes the posted values onto
    its instance, while the page and the service's audit diff need the stored ones."""
    return copy.copy(broker)


def _product_for_create(request: HttpRequest) -> Product:
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
def broker_list(request: HttpRequest) -> HttpResponse:
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
def broker_create(request: HttpRequest) -> HttpResponse:
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
                return HttpResponseLocation(_detail_url(broker))
            return redirect(_detail_url(broker))
    return render(
        request,
        "brokers/form.html",
        {"form": form, "product": product, "broker": None},
    )


@login_required
def broker_edit(request: HttpRequest, pk: int) -> HttpResponse:
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
                return HttpResponseLocation(_detail_url(broker))
            return redirect(_detail_url(broker))
    return render(
        request,
        "brokers/form.html",
        {"form": form, "product": broker.product, "broker": broker},
    )


@login_required
@require_POST
def broker_test(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Try the form's settings once, saved or not.

    For a saved broker, empty secret fields test with the stored secrets. HTMX gets
    the result fragment; without JavaScript the form page comes back with it.
    """
    if pk is not None:
        broker: Broker | None = get_for_user_or_404(
            Broker, request.user, Role.OPERATOR, pk=pk
        )
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
    result = (
        None
        if errors
        else services.broker_test_connection(form.connection_settings()).as_dict()
    )
    context = {
        "form": form,
        "product": product,
        "broker": broker,
        "test_errors": errors,
        "test_result": result,
        "test_hint": TEST_HINTS.get(result["error"], "") if result else "",
    }
    if request.htmx:
        return render(request, "brokers/partials/test_result.html", context)
    return render(request, "brokers/form.html", context)


@login_required
def broker_delete(request: HttpRequest, pk: int) -> HttpResponse:
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
def broker_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The broker page with its tabs (?tab=); an HTMX poll gets the status block."""
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    tab = request.GET.get("tab", "overview")
    if tab not in dict(TABS):
        raise Http404
    can_operate = _can_operate(request.user, broker.product)
    context: dict[str, Any] = {
        "broker": broker,
        "status": selectors.status_of(broker),
        "can_operate": can_operate,
        "tab": tab,
        "tabs": [(slug, label, _detail_url(broker, slug)) for slug, label in TABS],
    }
    if request.htmx:
        return render(request, "brokers/partials/status_block.html", context)
    if tab == "overview":
        context.update(_subscriptions_context(broker, can_operate))
    elif tab == "publish":
        initial = None
        template_id = request.GET.get("template")
        if template_id and template_id.isdigit():
            template = _template_of(request, broker, int(template_id), Role.VIEWER)
            initial = PublishForm.initial_from_template(template)
        context.update(
            _publish_context(
                broker, can_operate, PublishForm(initial=initial, broker=broker)
            )
        )
    return render(request, "brokers/detail.html", context)


@login_required
@require_POST
def broker_control(request: HttpRequest, pk: int) -> HttpResponse:
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
            target = _detail_url(broker)
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
    request: HttpRequest, broker: Broker, form: SubscriptionForm | None = None
) -> HttpResponse:
    if request.htmx:
        return render(
            request,
            "brokers/partials/subscriptions.html",
            _subscriptions_context(broker, True, form),
        )
    if form is not None and form.errors:
        for error in form.errors.values():
            messages.error(request, " ".join(error))
    return redirect(_detail_url(broker))


@login_required
@require_POST
def subscription_create(request: HttpRequest, pk: int) -> HttpResponse:
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
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


def _subscription_of(request: HttpRequest, pk: int, sid: int) -> Subscription:
    return get_for_user_or_404(
        Subscription, request.user, Role.OPERATOR, pk=sid, broker_id=pk
    )


@login_required
@require_POST
def subscription_toggle(request: HttpRequest, pk: int, sid: int) -> HttpResponse:
    subscription = _subscription_of(request, pk, sid)
    services.subscription_update(
        actor=request.user, subscription=subscription, enabled=not subscription.enabled
    )
    return _subscriptions_response(request, subscription.broker)


@login_required
@require_POST
def subscription_delete(request: HttpRequest, pk: int, sid: int) -> HttpResponse:
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
    request: HttpRequest, broker: Broker, form: PublishForm, notice: str = ""
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
                "tabs": [(s, label, _detail_url(broker, s)) for s, label in TABS],
            }
        )
        return render(request, "brokers/detail.html", context)
    if notice:
        messages.success(request, notice)
    return redirect(_detail_url(broker, "publish"))


def _template_of(
    request: HttpRequest, broker: Broker, tid: int, minimum: Role
) -> PublishTemplate:
    return get_for_user_or_404(
        PublishTemplate, request.user, minimum, pk=tid, broker=broker
    )


@login_required
@require_POST
def broker_publish(request: HttpRequest, pk: int) -> HttpResponse:
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
def template_save(request: HttpRequest, pk: int) -> HttpResponse:
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
def template_delete(request: HttpRequest, pk: int, tid: int) -> HttpResponse:
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    template = _template_of(request, broker, tid, Role.OPERATOR)
    services.publish_template_delete(actor=request.user, template=template)
    notice = _("Template %s deleted.") % template.name
    return _publish_response(request, broker, PublishForm(broker=broker), notice)
