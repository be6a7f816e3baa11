"""The Publish tab: publishing a message, saving and deleting publish templates."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from brokers import selectors, services
from brokers.client import PublishError
from brokers.forms import (
    PublishForm,
    apply_errors,
)
from brokers.models import Broker, PublishTemplate
from brokers.tabs import (
    detail_url,
    tab_links,
    tab_template,
)
from mqttadmin.http import PortalRequest, fragment_wanted
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

# What to check after a failed connection test, by the kind of failure.

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
    if fragment_wanted(request):
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
