"""The broker page's Clients and Stats tabs: connected clients from the broker's log,
$SYS statistics with charts.

This app registers both tabs (`register_broker_tabs`, from AppConfig.ready), which
broker_detail renders with `clients_tab` / `stats_tab`; the views here serve their
HTMX fragments (polled every few seconds) and the Clients tab's one write, which
disables a client's MQTT user and needs the admin role. Without JavaScript the
fragments' URLs lead back to the tab.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from django.views.decorators.http import require_POST

from acl.choices import Management
from acl.services import managed_of
from brokers.models import Broker
from brokers.tabs import STATUS_TARGET, BrokerTab, register_tab
from mqttadmin.http import PortalRequest, fragment_wanted
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role
from observe import client_log, sys_stats

CLIENTS_TABLE = "observe/partials/clients_table.html"
STATS_CARDS = "observe/partials/stats_cards.html"
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


def clients_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> dict[str, Any]:
    """The Clients tab's context for broker_detail (its HTMX poll: the status)."""
    if fragment_wanted(request, STATUS_TARGET):
        return {}
    return clients_context(request.user, broker)


def clients_live(user: Any, broker: Broker) -> tuple[str, dict[str, Any]]:
    """The Clients tab's table as the broker's socket pushes it."""
    return CLIENTS_TABLE, clients_context(user, broker)


def stats_tab(
    request: PortalRequest, broker: Broker, context: dict[str, Any]
) -> dict[str, Any]:
    """The Stats tab's context for broker_detail (its HTMX poll: the status)."""
    if fragment_wanted(request, STATUS_TARGET):
        return {}
    return stats_context(broker)


def register_broker_tabs() -> None:
    """The broker page's tabs this app serves (AppConfig.ready)."""
    register_tab(
        BrokerTab(
            "clients",
            _l("Clients"),
            80,
            "observe/tabs/clients.html",
            clients_tab,
            live=clients_live,
        )
    )
    register_tab(
        BrokerTab("stats", _l("Stats"), 90, "observe/tabs/stats.html", stats_tab)
    )


@login_required
def broker_clients(request: PortalRequest, pk: int) -> HttpResponse:
    """The clients table for HTMX polling; a browser goes to the Clients tab."""
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    if not fragment_wanted(request):
        return redirect(_tab_url(broker, "clients"))
    return render(request, CLIENTS_TABLE, clients_context(request.user, broker))


@login_required
def broker_stats(request: PortalRequest, pk: int) -> HttpResponse:
    """The stats cards for HTMX polling; a browser goes to the Stats tab."""
    broker = get_for_user_or_404(Broker, request.user, pk=pk)
    if not fragment_wanted(request):
        return redirect(_tab_url(broker, "stats"))
    return render(request, STATS_CARDS, stats_context(broker))


@login_required
@require_POST
def client_disable(request: PortalRequest, pk: int) -> HttpResponse:
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
    if fragment_wanted(request):
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
