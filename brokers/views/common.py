"""What the broker pages share: the status block's id, role checks, the product a
new broker goes into."""

from __future__ import annotations

import copy
from typing import Any

from django.http import Http404
from django.utils.translation import gettext_lazy as _l

from brokers.models import Broker
from brokers.tabs import STATUS_TARGET as STATUS_TARGET
from mqttadmin.http import PortalRequest
from mqttadmin.models import Product
from mqttadmin.permissions import get_for_user_or_404
from mqttadmin.roles import Role

# What to check after a failed connection test, by the kind of failure.

TEST_HINTS: dict[str, Any] = {
    "dns": _l("Check the host name."),
    "refused": _l("Nothing accepts connections there: check host, port and transport."),
    "timeout": _l(
        "Check host, port and firewalls, and whether the port expects TLS or not."
    ),
    "tls": _l("Check the CA certificate, the host name, and whether TLS is on."),
    "bad_credentials": _l("Check the username and password."),
    # Mosquitto refuses a wrong password with "not authorised", not "bad password".
    "not_authorized": _l(
        "Bad username or password, or this user may not connect "
        "(Mosquitto answers both this way)."
    ),
    "protocol": _l("Check the protocol version and the client id."),
    "network": _l("Check the network path to the broker."),
}


def _can_operate(user: Any, product: Product) -> bool:
    return product.allows(user, Role.OPERATOR)


def _detached(broker: Broker) -> Broker:
    """A copy for a form to validate on: a ModelForm writes the posted values onto
    its instance, while the page and the service's audit diff need the stored ones."""
    return copy.copy(broker)


def _product_for_create(request: PortalRequest) -> Product:
    """The product a new broker goes into: the one named in the request, else the
    current one; operator or more needed there."""
    product_id = request.POST.get("product") or request.GET.get("product")
    if not product_id:
        current = getattr(request, "product", None)
        if current is None:
            raise Http404
        product_id = current.pk
    return get_for_user_or_404(Product, request.user, Role.OPERATOR, pk=product_id)
