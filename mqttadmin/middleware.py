"""Request middleware: the audit source and the current product of the session."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from mqttadmin.audit import current_source, source_for_path
from mqttadmin.http import PortalRequest
from mqttadmin.models import Product

SESSION_PRODUCT_KEY = "current_product_id"


class CurrentProductMiddleware:
    """Sets `request.product` (the product switcher's choice) and the audit source."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: PortalRequest) -> HttpResponse:
        token = current_source.set(source_for_path(request.path))
        try:
            request.product = self._current_product(request)
            return self.get_response(request)
        finally:
            current_source.reset(token)

    @staticmethod
    def _current_product(request: HttpRequest) -> Product | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        visible = Product.objects.for_user(user)
        product_id = request.session.get(SESSION_PRODUCT_KEY)
        product = visible.filter(pk=product_id).first() if product_id else None
        return product or visible.order_by("name").first()
