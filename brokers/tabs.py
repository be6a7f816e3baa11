"""The broker page's tabs, contributed by the apps that own them.

Like NetBox's `ViewTab`, a tab is declared by the app that serves it, not listed by
the page: `register_tab(BrokerTab(...))` from the app's `AppConfig.ready()`. The
broker page (`brokers.views.connections.broker_detail`) asks `broker_tabs()`
which tabs exist, in weight order, and calls the open tab's `handler`:

- it returns an `HttpResponse` when the tab answers its own HTMX requests
  (filters, paging) with fragments, or renders the page itself;
- or a dict of extra context for `brokers/detail.html`, which includes the tab's
  `template`.

A tab whose fragment the broker's socket re-renders when a frame says it changed
(the Clients tab) gives `live`: (user, broker) -> (template, context); the consumer
calls `render_live_tab`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse

from brokers.selectors import status_of
from mqttadmin.http import PortalRequest, page_or_fragment
from mqttadmin.roles import Role

if TYPE_CHECKING:
    from brokers.models import Broker

TabHandler = Callable[
    [PortalRequest, "Broker", dict[str, Any]], HttpResponse | dict[str, Any]
]
TabLiveRenderer = Callable[[Any, "Broker"], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class BrokerTab:
    """One tab of the broker page: `?tab=<slug>`."""

    slug: str
    label: Any  # a lazy translation
    weight: int
    template: str
    handler: TabHandler | None = None
    live: TabLiveRenderer | None = None


_tabs: dict[str, BrokerTab] = {}

# The id of the broker page's status block: its poll names it in HX-Target, and
# every tab's handler leaves its own context out for that poll.
STATUS_TARGET = "broker-status"


def register_tab(tab: BrokerTab) -> None:
    """Add (or replace, by slug) a tab of the broker page."""
    _tabs[tab.slug] = tab


def broker_tabs() -> list[BrokerTab]:
    """The registered tabs, in weight order."""
    return sorted(_tabs.values(), key=lambda tab: (tab.weight, tab.slug))


def broker_tab(slug: str) -> BrokerTab | None:
    return _tabs.get(slug)


def render_live_tab(slug: str, user: Any, broker: Broker, **extra: Any) -> str:
    """The tab's fragment as a live push sends it; "" when no app serves it live."""
    tab = broker_tab(slug)
    if tab is None or tab.live is None:
        return ""
    template, context = tab.live(user, broker)
    return render_to_string(template, {**context, **extra})


def detail_url(broker: Broker, tab: str = "overview") -> str:
    url = reverse("brokers:detail", args=[broker.pk])
    return url if tab == "overview" else f"{url}?tab={tab}"


def tab_template(slug: str) -> str:
    tab = broker_tab(slug)
    return tab.template if tab else f"brokers/tabs/{slug}.html"


def tab_links(broker: Broker) -> list[tuple[str, Any, str]]:
    return [(t.slug, t.label, detail_url(broker, t.slug)) for t in broker_tabs()]


def page_context(request: HttpRequest, broker: Broker, tab: str) -> dict[str, Any]:
    """What brokers/detail.html needs around a tab, for any view that renders the
    broker page (the tab's own app included)."""
    return {
        "broker": broker,
        "status": status_of(broker),
        "can_operate": broker.product.allows(request.user, Role.OPERATOR),
        "tab": tab,
        "tab_template": tab_template(tab),
        "tabs": tab_links(broker),
    }


def page_response(
    request: PortalRequest, fragment: str, context: dict[str, Any]
) -> HttpResponse:
    """The fragment when htmx asked for it, else the whole broker page (the one
    decision: mqttadmin.http.fragment_wanted)."""
    return page_or_fragment(request, "brokers/detail.html", fragment, context)
