"""A seeded world for the security tests: two products, each with one of every
object the portal has, and a user per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from mqttadmin.models import Membership, Product
from tests.factories import make_product, make_superuser, make_user


@dataclass
class Tenant:
    """One product's objects, by the URL kwarg names routes use for them."""

    product: Product
    objects: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.objects[name]


def seed_tenant(product: Product, prefix: str, files_dir: Path) -> Tenant:
    from acl.models import ManagedBroker, MqttRole, MqttRule, MqttUser
    from alerts.models import Alert
    from brokers import services as broker_services
    from brokers.models import (
        ProductMqttConfig,
        PublishTemplate,
        Subscription,
    )
    from devices.models import AlertRule, DeviceImport
    from devices.services import device_create
    from history.models import StoredMessage, Topic
    from mqttadmin.pipeline import ReceivedMessage
    from runtime.ingest import store_batch

    # Disabled: the MQTT runtime must not connect anywhere during these tests.
    broker = broker_services.broker_create(
        actor=None,
        product=product,
        name=f"{prefix} broker",
        host="127.0.0.1",
        port=1,
        enabled=False,
        connect_timeout=1.0,
    )
    topic = Topic.objects.create(broker=broker, topic=f"{prefix}/temp", messages=1)
    subscription = Subscription.objects.create(
        broker=broker, name=f"{prefix} sub", topic_filter=f"{prefix}/#"
    )
    template = PublishTemplate.objects.create(
        broker=broker, name=f"{prefix} template", topic=f"{prefix}/cmd"
    )
    device = device_create(
        actor=None,
        product=product,
        broker=broker,
        device_id=f"{prefix}-d1",
        name=f"{prefix} device",
        topic=f"{prefix}/d1",
    )
    rule = AlertRule.objects.create(
        product=product, device=device, key="temp", op=">", threshold=30
    )
    device_import = DeviceImport.objects.create(
        product=product, broker=broker, filename="devices.csv"
    )
    alert = Alert.objects.create(
        product=product, rule_key=f"test:{prefix}", subject=f"{prefix}/temp"
    )
    # Managed through files in the test's directory; "reload" and "restart" are
    # commands that succeed without a broker to signal.
    files_dir.mkdir(parents=True, exist_ok=True)
    ManagedBroker.objects.create(
        broker=broker,
        management="files",
        password_file=str(files_dir / "passwd"),
        acl_file=str(files_dir / "acl"),
        reload_method="command",
        reload_command="true",
        restart_command="true",
    )
    ProductMqttConfig.objects.create(product=product, primary_broker=broker)
    # One stored message, so history and its deletion have something to act on.
    store_batch(
        [ReceivedMessage(broker.pk, f"{prefix}/temp", b"21", 0, False, timezone.now())]
    )
    message = StoredMessage.objects.get(broker=broker)
    mqtt_role = MqttRole.objects.create(broker=broker, name=f"{prefix}-role")
    MqttRule.objects.create(role=mqtt_role, topic=f"{prefix}/#", access="read")
    mqtt_user = MqttUser.objects.create(broker=broker, username=f"{prefix}-user")
    return Tenant(
        product=product,
        objects={
            "product": product,
            "broker": broker,
            "topic": topic,
            "message": message,
            "subscription": subscription,
            "template": template,
            "device": device,
            "rule": rule,
            "device_import": device_import,
            "alert": alert,
            "mqtt_role": mqtt_role,
            "mqtt_user": mqtt_user,
        },
    )


@pytest.fixture
def seeded(db: Any, tmp_path: Path) -> dict[str, Any]:
    """`users` by role (admin/operator/viewer/service of "Qxa Plant", `outsider`
    admin of "Qxb Other"), and `mine` / `theirs`: the seeded tenants. Every name in
    a tenant contains its marker (qxa, qxb) so leaks are easy to find in a page."""
    users = {
        "superuser": make_superuser("root"),
        "admin": make_user("alice"),
        "operator": make_user("oscar"),
        "viewer": make_user("victor"),
        "service": make_user("svc"),
        "outsider": make_user("olga"),
    }
    plant = make_product(
        "Qxa Plant",
        admin=users["admin"],
        operator=users["operator"],
        viewer=users["viewer"],
    )
    Membership.objects.create(product=plant, user=users["service"], role="service")
    other = make_product("Qxb Other", admin=users["outsider"])
    return {
        "users": users,
        "mine": seed_tenant(plant, "qxa", tmp_path / "qxa"),
        "theirs": seed_tenant(other, "qxb", tmp_path / "qxb"),
    }
