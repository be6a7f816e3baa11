"""The alerts page with its filters and acknowledge action (served under the
`dashboard:` URL names, as before the alerts app)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from alerts import selectors, services
from alerts.models import Alert, AlertState, Severity
from mqttadmin.http import PortalRequest, fragment_wanted, page_or_fragment
from mqttadmin.models import Product
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

ALERTS_PER_PAGE = 50
ALERT_FILTERS = ("state", "severity", "product", "page")


def _alert_filters(params: QueryDict, current: Product | None) -> dict[str, Any]:
    """The page's filters: open alerts of the current product unless told else
    (state "all" and product "all" widen them)."""
    state = params.get("state", AlertState.OPEN)
    if state not in (*AlertState.values, "all"):
        state = AlertState.OPEN
    severity = params.get("severity", "")
    if severity not in Severity.values:
        severity = ""
    product = params.get("product", str(current.pk) if current else "all")
    if product != "all" and not product.isdigit():
        product = "all"
    return {"state": state, "severity": severity, "product": product}


def _alerts_context(request: PortalRequest, params: QueryDict) -> dict[str, Any]:
    filters = _alert_filters(params, getattr(request, "product", None))
    alerts = selectors.alerts_for(
        request.user,
        product=int(filters["product"]) if filters["product"] != "all" else None,
        state=filters["state"] if filters["state"] != "all" else None,
        severity=filters["severity"] or None,
    )
    page = Paginator(alerts, ALERTS_PER_PAGE).get_page(params.get("page"))
    query = QueryDict(mutable=True)
    query.update({k: v for k, v in filters.items() if v})
    operable = set(
        Product.objects.for_user(request.user, Role.OPERATOR).values_list(
            "pk", flat=True
        )
    )
    return {
        "page": page,
        "alerts": selectors.with_subject_links(page.object_list),
        "filters": filters,
        "query": query.urlencode(),
        "products": Product.objects.for_user(request.user).order_by("name"),
        "states": [
            ("open", AlertState.OPEN.label),
            ("resolved", AlertState.RESOLVED.label),
        ],
        "severities": Severity.choices,
        "operable_products": operable,
    }


@login_required
def alerts(request: PortalRequest) -> HttpResponse:
    """Alerts of the user's products with filters; HTMX gets only the table."""
    context = _alerts_context(request, request.GET)
    return page_or_fragment(
        request, "alerts/alerts.html", "alerts/partials/alerts_table.html", context
    )


@login_required
@require_POST
def alert_ack(request: PortalRequest, pk: int) -> HttpResponse:
    """Acknowledge an alert (operators and up); HTMX gets the table back with the
    filters the page had, other requests go back to the page."""
    alert = get_for_user_or_404(Alert, request.user, Role.OPERATOR, pk=pk)
    services.alert_acknowledge(actor=request.user, alert=alert)
    params = QueryDict(mutable=True)
    params.update({k: v for k in ALERT_FILTERS if (v := request.POST.get(k))})
    if fragment_wanted(request):
        return render(
            request,
            "alerts/partials/alerts_table.html",
            _alerts_context(request, params),
        )
    url = reverse("dashboard:alerts")
    return redirect(f"{url}?{params.urlencode()}" if params else url)
