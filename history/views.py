"""The broker page's Activity and Topics tabs: the message history browser (with
its delete), the topic explorer with a topic's panel, and the retained messages
asked of the live broker.

Registered into the broker page from HistoryConfig.ready (brokers.tabs); their
routes keep the `brokers:` names (history/urls.py joins that namespace).
"""

from __future__ import annotations

import copy
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from brokers import services
from brokers.client import PublishError
from brokers.forms import RetainedClearForm, RetainedFilterForm, apply_errors
from brokers.models import Broker
from brokers.tabs import (
    BrokerTab,
    detail_url,
    page_context,
    page_response,
    register_tab,
)
from history import services as history_services
from history.forms import HistoryFilterForm, TopicAnnotationForm, TopicFilterForm
from history.models import Topic
from history.queries import (
    LIST_PAYLOAD_CHARS,
    PAGE_BUDGET_CHARS,
    messages_for,
    page_of,
    with_payload_heads,
)
from history.selectors import (
    TopicTree,
    exact_preview,
    last_value_cut_html,
    message_rows,
    topic_history,
    topic_last_preview,
    topic_tree,
)
from mqttadmin.audit import audit_record
from mqttadmin.http import PortalRequest, fragment_wanted
from mqttadmin.lib.payloads import exact_payload
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role


def _activity_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse:
    return _activity_response(request, broker, context)


def _topics_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse:
    return _topics_response(request, broker, context)


def register_broker_tabs() -> None:
    """The broker page's tabs this app serves (HistoryConfig.ready)."""
    for slug, label, weight, handler in (
        ("activity", _l("Activity"), 20, _activity_tab),
        ("topics", _l("Topics"), 30, _topics_tab),
    ):
        register_tab(
            BrokerTab(slug, label, weight, f"history/tabs/{slug}.html", handler)
        )


# --- Activity: the message history browser ------------------------------------

HISTORY_PAGE = 50


def _activity_context(
    broker: Broker, params: QueryDict, notice: str = ""
) -> dict[str, Any]:
    """The filter form and one page of matching messages, newest first. Bad filters
    are errors next to their fields and list nothing."""
    form = HistoryFilterForm(params)
    context: dict[str, Any] = {
        "filter_form": form,
        "rows": [],
        "filters": {},
        "filters_ok": False,
        "older_url": "",
        "exports": [],
        "cursor": params.get("cursor") or "",
        "notice": notice,
    }
    if not form.is_valid():
        return context
    filters = form.filter_params()
    queryset = messages_for(broker, form.query)
    try:
        page, next_cursor = page_of(
            with_payload_heads(queryset),
            HISTORY_PAGE,
            context["cursor"] or None,
            budget=PAGE_BUDGET_CHARS,
        )
    except ValidationError as exc:
        apply_errors(form, exc)
        return context
    api_url = reverse("api:broker-messages", args=[broker.pk])
    context.update(
        rows=message_rows(page, LIST_PAYLOAD_CHARS),
        filters=filters,
        filters_ok=True,
        exports=[
            (label, f"{api_url}?{urlencode({**filters, 'format': fmt})}")
            for fmt, label in (("csv", _("Export CSV")), ("ndjson", _("Export NDJSON")))
        ],
    )
    if next_cursor:
        older = urlencode({**filters, "cursor": next_cursor})
        context["older_url"] = f"{detail_url(broker, 'activity')}&{older}"
    return context


def _activity_response(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse:
    """The Activity tab. HTMX gets the filtered panel, or, for "Older" (a cursor),
    just the next rows to append."""
    context.update(_activity_context(broker, request.GET))
    fragment = (
        "history/partials/history_rows.html"
        if context["cursor"]
        else "history/partials/history_panel.html"
    )
    return page_response(request, fragment, context)


@login_required
@require_POST
def broker_history_delete(request: PortalRequest, pk: int) -> HttpResponse:
    """Delete the stored messages the posted filters match (operators); bad filters
    delete nothing and come back as errors."""
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    form = HistoryFilterForm(request.POST)
    notice = ""
    if form.is_valid():
        deleted = history_services.history_delete(broker, form.query)
        audit_record(
            actor=request.user,
            action="broker.history_delete",
            target=broker,
            changes={
                "deleted": [None, deleted],
                **{name: [None, value] for name, value in form.filter_params().items()},
            },
        )
        notice = ngettext(
            "Deleted %(count)d message.", "Deleted %(count)d messages.", deleted
        ) % {"count": deleted}
    if fragment_wanted(request):
        context = page_context(request, broker, "activity")
        context.update(_activity_context(broker, request.POST, notice))
        return render(request, "history/partials/history_panel.html", context)
    if notice:
        messages.success(request, notice)
    else:
        for errors in form.errors.values():
            messages.error(request, " ".join(str(error) for error in errors))
    query = urlencode(form.filter_params() if form.is_valid() else {})
    url = detail_url(broker, "activity")
    return redirect(f"{url}&{query}" if query else url)


# --- Topics: the topic explorer -----------------------------------------------


def _topics_context(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> dict[str, Any]:
    """The filter box and the tree (one query); a bad filter shows no tree."""
    form = TopicFilterForm(request.GET)
    tree = None
    kept: dict[str, str] = {}
    if form.is_valid():
        kept = {
            name: form.cleaned_data[name]
            for name in ("filter", "q")
            if form.cleaned_data[name]
        }
        tree = topic_tree(
            broker,
            form.cleaned_data["filter"] or None,
            expand_all=request.GET.get("expand") == "all",
            search=form.cleaned_data["q"] or None,
        )
    base = detail_url(broker, "topics")
    suffix = f"&{urlencode(kept)}" if kept else ""
    context.update(
        {
            "filter_form": form,
            "tree": tree,
            "tree_html": _topic_tree_html(broker, tree) if tree else "",
            "expand_url": f"{base}{suffix}&expand=all",
            "collapse_url": f"{base}{suffix}",
        }
    )
    context.setdefault("retained_form", RetainedFilterForm())
    return context


def topic_note_html(topic: Topic, out_of_band: bool = False) -> SafeString:
    """A topic's unit and description as the tree shows them; the panel sends it
    out of band after an annotation, so the tree shows the new note at once."""
    unit = f'<span class="unit">{escape(topic.unit)}</span>' if topic.unit else ""
    description = (
        f' <span class="description">{escape(topic.description)}</span>'
        if topic.description
        else ""
    )
    oob = ' hx-swap-oob="true"' if out_of_band else ""
    return mark_safe(  # noqa: S308 (the values are escaped)
        f'<span id="topic-note-{topic.pk}" class="topic-note"{oob}>'
        f"{unit}{description}</span>"
    )


def _topic_tree_html(broker: Broker, tree: TopicTree) -> SafeString:
    """The tree as nested <details> lists, from its flat rows (see TreeRow).

    Plain escaped strings rather than a template or format_html: the template
    engine costs ~100 µs a node (over a second for 5,000 topics), this ~10 µs.
    """
    url_prefix = reverse("brokers:detail", args=[broker.pk]) + "topics/"
    binary = escape(_("binary"))
    cut_note = last_value_cut_html()
    parts: list[str] = []
    for row in tree.rows:
        node, topic = row.node, row.node.topic
        name = escape(node.name) if node.name else "∅"
        if topic is not None:
            url = f"{url_prefix}{topic.pk}/"
            label = (
                f'<a class="node-name" href="{url}" hx-get="{url}">{name}</a>'
                f'<span class="count" id="topic-count-{topic.pk}">'
                f"{topic.messages}</span>"
            )
        else:
            label = f'<span class="node-name">{name}</span>'
        if node.has_children:
            label += f'<span class="total">Σ {node.total}</span>'
        preview = node.preview
        if topic is not None and preview is not None and preview.size:
            shown = (
                binary
                if preview.is_binary
                else escape(preview.text) + ("…" if preview.truncated else "")
            )
            cut = cut_note if topic.last_payload_truncated else ""
            label += (
                f'<code class="last" id="topic-last-{topic.pk}">{shown}{cut}</code>'
            )
        if topic is not None:
            label += topic_note_html(topic)
        body = f'<span class="node" title="{escape(node.path)}">{label}</span>'
        if node.has_children:
            is_open = " open" if row.open else ""
            parts.append(
                f'<li class="branch"><details{is_open}><summary>{body}</summary><ul>\n'
            )
        else:
            parts.append(f'<li class="leaf">{body}</li>')
            parts.append("</ul></details></li>" * len(row.closes) + "\n")
    return mark_safe("".join(parts))  # noqa: S308 (every value is escaped above)


def _topics_response(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse:
    """The Topics tab; HTMX (the filter box, expand/collapse) gets the tree."""
    _topics_context(request, broker, context)
    return page_response(request, "history/partials/topic_tree.html", context)


def _topic_of(request: PortalRequest, pk: int, tid: int, minimum: Role) -> Topic:
    return get_for_user_or_404(Topic, request.user, minimum, pk=tid, broker_id=pk)


# The topic page shows all the index keeps of the last value (4,096 bytes).
LAST_VALUE_CHARS = 4096


def _topic_panel_context(
    request: PortalRequest,
    topic: Topic,
    form: TopicAnnotationForm | None = None,
    notice: str = "",
) -> dict[str, Any]:
    broker = topic.broker
    can_operate = broker.product.allows(request.user, Role.OPERATOR)
    recent = topic_history(broker, topic)
    return {
        "broker": broker,
        "topic": topic,
        "can_operate": can_operate,
        "panel": True,
        "panel_rows": recent.rows,
        "last_value": topic_last_preview(topic, limit=LAST_VALUE_CHARS),
        "chart": recent.chart,
        "annotation_form": (
            (form or TopicAnnotationForm(instance=topic)) if can_operate else None
        ),
        "activity_url": (
            f"{detail_url(broker, 'activity')}&{urlencode({'topic': topic.topic})}"
        ),
        "notice": notice,
    }


def _topic_panel_response(
    request: PortalRequest, topic: Topic, context: dict[str, Any]
) -> HttpResponse:
    """The panel for HTMX; without JavaScript the Topics tab with the panel open."""
    if not fragment_wanted(request):
        context = {**page_context(request, topic.broker, "topics"), **context}
        _topics_context(request, topic.broker, context)
    return page_response(request, "history/partials/topic_panel.html", context)


@login_required
def topic_panel(request: PortalRequest, pk: int, tid: int) -> HttpResponse:
    """One topic: its recent history, a chart of its numbers, its annotation."""
    topic = _topic_of(request, pk, tid, Role.VIEWER)
    return _topic_panel_response(request, topic, _topic_panel_context(request, topic))


@login_required
@require_POST
def topic_annotate(request: PortalRequest, pk: int, tid: int) -> HttpResponse:
    """An operator sets a topic's description and unit."""
    topic = _topic_of(request, pk, tid, Role.OPERATOR)
    # A copy: a ModelForm writes posted values onto its instance, even invalid ones.
    form = TopicAnnotationForm(request.POST, instance=copy.copy(topic))
    if form.is_valid():
        try:
            history_services.topic_annotate(
                actor=request.user, topic=topic, **form.cleaned_data
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            notice = _("Saved the description and unit.")
            if not fragment_wanted(request):
                messages.success(request, notice)
                return redirect("brokers:topic-panel", pk=pk, tid=tid)
            context = _topic_panel_context(request, topic, notice=notice)
            # The tree shows the note too: the panel sends its new text out of band.
            context["note_out_of_band"] = topic_note_html(topic, out_of_band=True)
            return _topic_panel_response(request, topic, context)
    return _topic_panel_response(
        request, topic, _topic_panel_context(request, topic, form)
    )


# --- Retained messages (asked of the live broker) ------------------------------

RETAINED_LIMIT = 1000
PREVIEW_CHARS = 200


def _retained_context(
    broker: Broker,
    form: RetainedFilterForm,
    *,
    can_operate: bool,
    notice: str = "",
    error: str = "",
    clear_form: RetainedClearForm | None = None,
) -> dict[str, Any]:
    """What the broker retains under the form's filter. A broker that cannot be
    reached is an error shown on the page, not a server error; after a failed clear
    (`error`) it is not asked again, since it would only fail the same way."""
    context: dict[str, Any] = {
        "broker": broker,
        "can_operate": can_operate,
        "retained_form": form,
        "retained_loaded": True,
        "retained": [],
        "retained_error": error,
        "retained_limit": RETAINED_LIMIT,
        "retained_notice": notice,
        "retained_clear_form": clear_form or RetainedClearForm(),
    }
    if error or not form.is_valid():
        return context
    try:
        listing = services.broker_retained_list(
            broker=broker,
            topic_filter=form.cleaned_data["filter"],
            limit=RETAINED_LIMIT,
        )
    except PublishError as exc:
        context["retained_error"] = _("The broker could not be reached: %s") % exc
        return context
    context["retained_listing"] = listing
    context["retained"] = [
        (
            message,
            exact_preview(
                exact_payload(message.payload), len(message.payload), PREVIEW_CHARS
            ),
        )
        for message in listing.messages
    ]
    return context


def _retained_response(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> HttpResponse:
    """The list for HTMX; without JavaScript the Topics tab with the list loaded."""
    if not fragment_wanted(request):
        context = {**page_context(request, broker, "topics"), **context}
        _topics_context(request, broker, context)
    return page_response(request, "history/partials/retained_section.html", context)


@login_required
def broker_retained(request: PortalRequest, pk: int) -> HttpResponse:
    """The retained messages, loaded on demand: it subscribes on the live broker."""
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    context = _retained_context(
        broker,
        RetainedFilterForm(request.GET),
        can_operate=broker.product.allows(request.user, Role.OPERATOR),
    )
    return _retained_response(request, broker, context)


@login_required
@require_POST
def broker_retained_clear(request: PortalRequest, pk: int) -> HttpResponse:
    """Clear one topic's retained message or a subtree's, then list again."""
    broker = get_for_user_or_404(Broker, request.user, Role.OPERATOR, pk=pk)
    clear_form = RetainedClearForm(request.POST)
    filter_form = RetainedFilterForm(request.POST)
    notice = error = ""
    if clear_form.is_valid():
        try:
            cleared = services.broker_retained_clear(
                actor=request.user, broker=broker, **clear_form.cleaned_data
            )
        except ValidationError as exc:
            apply_errors(clear_form, exc)
        except PublishError as exc:
            error = _("The broker could not be reached: %s") % exc
        else:
            notice = ngettext(
                "Cleared %(count)d retained message.",
                "Cleared %(count)d retained messages.",
                len(cleared),
            ) % {"count": len(cleared)}
            clear_form = RetainedClearForm()
    if fragment_wanted(request):
        context = _retained_context(
            broker,
            filter_form,
            can_operate=True,
            notice=notice,
            error=error,
            clear_form=clear_form,
        )
        return _retained_response(request, broker, context)
    if notice:
        messages.success(request, notice)
    for text in [
        error,
        *(" ".join(str(m) for m in e) for e in clear_form.errors.values()),
    ]:
        if text:
            messages.error(request, text)
    url = reverse("brokers:retained", args=[broker.pk])
    if filter_form.is_valid():
        url += "?" + urlencode({"retained-filter": filter_form.cleaned_data["filter"]})
    return redirect(url)
