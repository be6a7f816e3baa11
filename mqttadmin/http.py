"""The request type that views see once the middleware stack has run, and the one
place that decides whether a request gets a fragment or the whole page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseLocation

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

    from mqttadmin.models import Product


class PortalRequest(HttpRequest):
    """An `HttpRequest` with what our middleware adds: `htmx` (django-htmx's
    HtmxMiddleware) and `product`, the product switcher's choice
    (mqttadmin.middleware.CurrentProductMiddleware). Only for annotations: views
    receive Django's own request object."""

    htmx: HtmxDetails
    product: Product | None


# The request headers the answer depends on: a cache (the browser's included, for
# hx-push-url pages) must never hand a fragment out as the page or the other way.
FRAGMENT_VARY = ("HX-Request", "HX-Target")


def fragment_wanted(request: HttpRequest, target: str | Sequence[str] = ()) -> bool:
    """Whether htmx asked for a fragment to swap into an element of the page.

    htmx marks other requests as its own too, and those want the whole page: a
    history restore after Back, a boosted link, and the GET that follows an
    `HX-Location` answer (it targets the body, which has no id, so no HX-Target).
    So a fragment only when HX-Target names an element; `target`, when given, is
    the element id (or ids) this view's fragment replaces, for views that serve
    more than one.
    """
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.history_restore_request or htmx.boosted:
        return False
    if not htmx.target:
        return False
    if not target:
        return True
    wanted = (target,) if isinstance(target, str) else tuple(target)
    return htmx.target in wanted


def page_or_fragment(
    request: HttpRequest,
    page: str,
    fragment: str,
    context: dict[str, Any],
    *,
    target: str | Sequence[str] = (),
    status: int = 200,
) -> HttpResponse:
    """Render `fragment` when htmx asked for it (see `fragment_wanted`), else the
    whole `page`; the answer varies on the headers that chose it."""
    template = fragment if fragment_wanted(request, target) else page
    response = render(request, template, context, status=status)
    patch_vary_headers(response, FRAGMENT_VARY)
    return response


def navigate(request: HttpRequest, url: str) -> HttpResponse:
    """Send the browser to another page after a change: htmx follows an
    `HX-Location` (a redirect would be swapped into the form's target), a plain
    form a redirect. Either way the new page comes whole, with its messages."""
    if getattr(request, "htmx", None):
        return HttpResponseLocation(url)
    return redirect(url)
