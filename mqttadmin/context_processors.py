"""Template context shared by every page: navigation and the product switcher."""

from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from mqttadmin.models import Product

# Sections of the portal; an entry shows once its app serves the page.
NAVIGATION = (
    (_("Overview"), "dashboard:overview"),
    (_("Brokers"), "brokers:list"),
    (_("Devices"), "devices:list"),
    (_("Alerts"), "dashboard:alerts"),
    (_("API"), "api-docs"),
)


def _nav_items(path: str) -> list[dict[str, Any]]:
    items = []
    for label, name in NAVIGATION:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        active = path == url if url == "/" else path.startswith(url)
        items.append({"label": label, "url": url, "active": active})
    return items


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    product = getattr(request, "product", None)
    return {
        "nav_items": _nav_items(request.path),
        "nav_products": Product.objects.for_user(user).order_by("name"),
        "current_product": product,
        "current_role": product.role_of(user) if product else None,
    }
