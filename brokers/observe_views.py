"""The broker page's Clients and Stats tabs: connected clients from the broker's log,
$SYS statistics with charts.

broker_detail renders the tabs (with `tab_context`); the views here serve their
HTMX fragments (polled every few seconds) and the Clients tab's one write, which
disables a client's MQTT user and needs the admin role. Without JavaScript the
fragments' URLs lead back to the tab.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from brokers import client_log, sys_stats
from brokers.models import Broker
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

CLIENTS_TABLE = "brokers/partials/clients_table.html"
STATS_CARDS = "brokers/partials/stats_cards.html"
# Shown in the page's tables (the API returns all that is kept).
EVENTS_SHOWN = 20


def _tab_url(broker: Broker, tab: str) -> str:
    return f"{reverse('brokers:detail', args=[broker.pk])}?tab={tab}"


def _dated(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """The row with its ISO timestamps as datetimes, for the template's filters."""
    return {
        **row,
        **{
            name: parse_datetime(row[name]) if row.get(name) else None for name in names
        },
    }


def clients_context(user: Any, broker: Broker) -> dict[str, Any]:
    """What clients_table.html shows (also what a live push renders it with)."""
    from acl.choices import Management
    from acl.services import managed_of

    clients = client_log.clients_of(broker)
    return {
        "broker": broker,
        "connected": [_dated(row, "connected_at") for row in clients["connected"]],
        "recent_disconnects": [
            _dated(row, "at") for row in clients["recent_disconnects"][:EVENTS_SHOWN]
        ],
        "refused": [_dated(row, "at") for row in clients["refused"][:EVENTS_SHOWN]],
        "log_available": clients["log_available"],
        "collecting": clients["collecting"],
        "since": parse_datetime(clients["since"]) if clients["since"] else None,
        "hint": clients["hint"],
        "can_disable": broker.product.allows(user, Role.ADMIN)
        and managed_of(broker).management == Management.DYNSEC,
    }


def stats_context(broker: Broker) -> dict[str, Any]:
    stats = sys_stats.stats_of(broker)
    stats.pop("series")  # the charts fetch it from the API
    return {
        "broker": broker,
        "stats": stats,
        "stats_updated_at": parse_datetime(stats["updated_at"])
        if stats["updated_at"]
        else None,
    }


def tab_context(request: HttpRequest, broker: Broker, tab: str) -> dict[str, Any]:
    """The extra context of the Clients and Stats tabs for broker_detail."""
    if tab == "clients":
        return clients_context(request.user, broker)
    return stats_context(broker)


@login_required
def broker_clients(request: HttpRequest, pk: int) -> HttpResponse:
    """The clients table for HTMX polling; a browser goes to the Clients tab."""
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    if not request.htmx:
        return redirect(_tab_url(broker, "clients"))
    return render(request, CLIENTS_TABLE, clients_context(request.user, broker))


@login_required
def broker_stats(request: HttpRequest, pk: int) -> HttpResponse:
    """The stats cards for HTMX polling; a browser goes to the Stats tab."""
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    if not request.htmx:
        return redirect(_tab_url(broker, "stats"))
    return render(request, STATS_CARDS, stats_context(broker))


@login_required
@require_POST
def client_disable(request: HttpRequest, pk: int) -> HttpResponse:
    """Disable the MQTT user of a connected client (Dynamic Security kicks it)."""
    broker = get_for_user_or_404(Broker, request.user, Role.ADMIN, pk=pk)
    client_id = request.POST.get("client_id", "")
    error = ""
    notice = ""
    try:
        user, result = client_log.connected_client_disable(
            actor=request.user, broker=broker, client_id=client_id
        )
    except ValidationError as exc:
        error = " ".join(exc.messages)
    else:
        if result.applied:
            notice = _("User %(user)s disabled; %(client)s was disconnected.") % {
                "user": user.username,
                "client": client_id,
            }
        else:
            error = _(
                "User %(user)s disabled in the portal, but the broker refused: "
                "%(error)s"
            ) % {"user": user.username, "error": result.error}
    if request.htmx:
        context = {
            **clients_context(request.user, broker),
            "error": error,
            "notice": notice,
        }
        # 200 with the reason in the table: htmx swaps no 4xx answers.
        return render(request, CLIENTS_TABLE, context)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, notice)
    return redirect(_tab_url(broker, "clients"))
