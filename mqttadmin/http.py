"""The request type that views see once the middleware stack has run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

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
