"""The overview page (the alerts page is alerts.views)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from dashboard import selectors
from mqttadmin.http import PortalRequest


@login_required
def overview(request: PortalRequest) -> HttpResponse:
    context = selectors.overview_for(request.user, getattr(request, "product", None))
    return render(request, "dashboard/overview.html", context)
