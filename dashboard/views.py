"""The overview page: the products, brokers and devices the user can see."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import selectors


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    context = selectors.overview_for(request.user, getattr(request, "product", None))
    return render(request, "dashboard/overview.html", context)
