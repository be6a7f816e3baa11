"""Small factories for tests (no JSON fixtures): one function per kind of row.

A factory makes the row the way the product does (through the app's service:
audit entry, status row, runtime nudge) unless `via_service=False` asks for the
bare row, as a test of a lower layer or of rows saved before today's rules needs.
"""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model

from brokers import services as broker_services
from brokers.models import Broker, BrokerStatus, PublishTemplate, Subscription
from devices import services as device_services
from devices.models import Device
from mqttadmin.models import Membership, Product

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery"
# What a user changes their password to in the account journeys.
NEW_PASSWORD = "a-longer-new-passphrase-42"


def make_user(username: str | None = None, **extra: Any) -> Any:
    username = username or f"user{next(_seq)}"
    return get_user_model().objects.create_user(
        username=username, password=PASSWORD, **extra
    )


def make_superuser(username: str | None = None) -> Any:
    username = username or f"root{next(_seq)}"
    return get_user_model().objects.create_superuser(
        username=username, email="", password=PASSWORD
    )


def make_product(name: str | None = None, **members: Any) -> Product:
    """`make_product(admin=user, viewer=other)` adds members by role."""
    n = next(_seq)
    product = Product.objects.create(name=name or f"Product {n}", slug=f"product-{n}")
    for role, user in members.items():
        Membership.objects.create(product=product, user=user, role=role)
    return product


def make_broker(
    product: Product | None = None,
    *,
    name: str = "Line 1",
    host: str = "127.0.0.1",
    port: int = 1883,
    actor: Any = None,
    via_service: bool = True,
    status: str | None = None,
    **fields: Any,
) -> Broker:
    """A broker connection of `product` (of a new product when None).

    Through `broker_create` by default (status row, audit entry by `actor`, runtime
    nudge); `via_service=False` saves the bare row. `status` sets the status row's
    state (the bare row gets one only when `status` is given).
    """
    product = product or make_product()
    if via_service:
        broker = broker_services.broker_create(
            actor=actor, product=product, name=name, host=host, port=port, **fields
        )
    else:
        broker = Broker.objects.create(
            product=product, name=name, host=host, port=port, **fields
        )
    if status is not None:
        BrokerStatus.objects.update_or_create(broker=broker, defaults={"state": status})
    return broker


def make_connected_broker(product: Product | None = None, **fields: Any) -> Broker:
    """A bare broker row whose status says connected, as pages and sockets show a
    broker the runtime holds (no runtime runs)."""
    return make_broker(product, via_service=False, status="connected", **fields)


def make_subscription(
    broker: Broker,
    *,
    name: str = "All",
    topic_filter: str = "plant/#",
    actor: Any = None,
    via_service: bool = True,
    **fields: Any,
) -> Subscription:
    """A subscription of `broker`: through `subscription_create` (validated,
    audited) by default; `via_service=False` saves the bare row, unvalidated, as a
    row saved before today's rules would be."""
    if via_service:
        return broker_services.subscription_create(
            actor=actor, broker=broker, name=name, topic_filter=topic_filter, **fields
        )
    return Subscription.objects.create(
        broker=broker, name=name, topic_filter=topic_filter, **fields
    )


def make_broker_subscribed_to_all(
    product: Product | None = None, **broker: Any
) -> Broker:
    """A broker (`make_broker(product, **broker)`) with a bare `#` subscription
    named "all", so every message ingested for it is matched and stored."""
    made = make_broker(product, **broker)
    make_subscription(made, name="all", topic_filter="#", via_service=False)
    return made


def make_device(
    product: Product, broker: Broker, device_id: str = "d1", **fields: Any
) -> Device:
    """A device through `device_create` (its broker subscribes to its topics)."""
    fields.setdefault("name", f"Device {device_id}")
    fields.setdefault("topic", f"plant/{device_id}")
    return device_services.device_create(
        actor=None, product=product, broker=broker, device_id=device_id, **fields
    )


def make_publish_template(
    broker: Broker, name: str = "Reset", **fields: Any
) -> PublishTemplate:
    """A saved publish template through `publish_template_save`."""
    fields.setdefault("topic", "plant/reset")
    return broker_services.publish_template_save(
        actor=None, broker=broker, name=name, **fields
    )
