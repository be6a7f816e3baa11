"""One subscription cannot take a broker connection down.

Mosquitto disconnects a client whose SUBSCRIBE holds a filter of more than 200
levels or a control character (in the filter or a `$share` group): saved, such a
filter kept the portal's connection in a reconnect loop. These filters are refused
on every entry path, and a subscription the broker still refuses (SUBACK >= 0x80)
or answers by closing the connection is disabled with the reason in `last_error`,
while the connection goes on receiving for the others.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
from django.urls import reverse

from acl.backends.dynsec import DynsecSession, admin_settings
from brokers import services
from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import (
    Broker,
    BrokerStatus,
    ProductMqttConfig,
    Subscription,
)
from devices.models import Device
from history.models import StoredMessage
from runtime.message_queue import MessageQueue
from runtime.session import BrokerSession, Delivery, StatusEvent
from tests.acl.conftest import ManagedProcess, dynsec_broker  # noqa: F401 (fixture)
from tests.clients import HTMX, as_user, logged_in
from tests.runtime_support import retrying, wait_until

DEEP = "/".join(["a"] * 300)
# 199 levels: valid alone, 201 with `$share/<group>/` in front.
DEEP_BUT_ONE = "/".join(["a"] * 199)


def subscription_state() -> list[tuple[Any, ...]]:
    return sorted(
        Subscription.objects.values_list("pk", "topic_filter", "shared_group")
    )


# --- Refused on every entry path ------------------------------------------------------


@pytest.fixture
def broker(world: dict) -> Broker:
    return services.broker_create(
        actor=None,
        product=world["product"],
        name="Plant",
        host="127.0.0.1",
        port=1,
        enabled=False,
    )


BAD_SUBSCRIPTIONS = [
    ({"topic_filter": DEEP}, "topic_filter", "at most 200"),
    (
        {"topic_filter": DEEP_BUT_ONE, "shared_group": "g"},
        "topic_filter",
        "at most 200",
    ),
    ({"topic_filter": f"$share/g/{DEEP_BUT_ONE}"}, "topic_filter", "at most 200"),
    (
        {"topic_filter": "x/#", "shared_group": "g\x01"},
        "shared_group",
        "control characters",
    ),
    ({"topic_filter": "$share/g\x85/x"}, "topic_filter", "control characters"),
    ({"topic_filter": "a/\x7f/b"}, "topic_filter", "control characters"),
    ({"topic_filter": "a/\x1b[31m"}, "topic_filter", "control characters"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "field", "rule"), BAD_SUBSCRIPTIONS)
def test_operator_cannot_save_a_filter_the_broker_disconnects_on_api(
    world: dict, broker: Broker, fields: dict, field: str, rule: str
) -> None:
    before = subscription_state()
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/subscriptions/",
        {"broker": broker.pk, "name": "bad", **fields},
        format="json",
    )
    assert response.status_code == 400
    assert rule in " ".join(response.json()[field]), response.json()
    assert subscription_state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "field", "rule"), BAD_SUBSCRIPTIONS)
def test_operator_cannot_save_a_filter_the_broker_disconnects_on_pages(
    world: dict, broker: Broker, fields: dict, field: str, rule: str
) -> None:
    before = subscription_state()
    client = logged_in(world["users"]["operator"], world["product"])
    response = client.post(
        reverse("brokers:subscription-new", args=[broker.pk]),
        {
            "name": "bad",
            "qos": "0",
            "shared_group": "",
            "actions-TOTAL_FORMS": "0",
            "actions-INITIAL_FORMS": "0",
            **fields,
        },
        **HTMX,
    )
    assert response.status_code == 200
    assert rule in response.content.decode()
    assert subscription_state() == before


@pytest.mark.django_db
def test_operator_cannot_change_a_subscription_into_one_through_mqtt_config(
    world: dict,
) -> None:
    client = as_user(world["users"]["operator"])
    url = f"/api/v1/products/{world['product'].pk}/mqtt-config/"
    config = {
        "broker": {"host": "127.0.0.1", "port": 1},
        "topics": {"use_shared": True, "shared_group": "g\x01"},
    }
    response = client.put(url, config, format="json")
    assert response.status_code == 400
    assert "topics.shared_group" in response.json(), response.json()
    response = client.put(
        url, {**config, "topics": {"pattern": DEEP, "prefix": "x/\x7f"}}, format="json"
    )
    assert response.status_code == 400
    assert {"topics.pattern", "topics.prefix"} <= set(response.json())
    assert not ProductMqttConfig.objects.exists()

    good = client.put(url, {**config, "topics": {}}, format="json")
    assert good.status_code == 200, good.content
    primary = ProductMqttConfig.objects.get().primary_broker
    assert primary is not None
    subscription = services.subscription_create(
        actor=None, broker=primary, name="ok", topic_filter="ok/#"
    )
    before = subscription_state()
    for body, field in [
        ({"topic_filter": DEEP}, "topic_filter"),
        ({"shared_group": "g\x1f"}, "shared_group"),
    ]:
        response = client.put(f"{url}subscriptions/{subscription.pk}/", body)
        assert response.status_code == 400 and field in response.json()
    assert subscription_state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"topic": DEEP}, "topic"),
        ({"topic": DEEP_BUT_ONE + "/b"}, "telemetry_topic"),  # <topic>/# is 201
        ({"telemetry_topic": "plant/\x02/#"}, "telemetry_topic"),
        ({"availability_topic": "plant/\x9f"}, "availability_topic"),
        ({"command_topic": DEEP}, "command_topic"),
    ],
)
def test_operator_cannot_give_a_device_topics_the_broker_disconnects_on(
    world: dict, broker: Broker, fields: dict, field: str
) -> None:
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/devices/",
        {
            "product": world["product"].pk,
            "broker": broker.pk,
            "device_id": "d1",
            "name": "Pump",
            "topic": "plant/d1",
            **fields,
        },
        format="json",
    )
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Device.objects.exists() and not Subscription.objects.exists()


@pytest.mark.django_db
def test_operator_cannot_publish_to_a_topic_of_too_many_levels(
    world: dict, broker: Broker
) -> None:
    response = as_user(world["users"]["operator"]).post(
        f"/api/v1/brokers/{broker.pk}/publish/", {"topic": DEEP, "payload": "x"}
    )
    assert response.status_code == 400 and "levels" in response.json()["topic"][0]


# --- Isolated at run time -------------------------------------------------------------


@pytest.fixture
def plain_broker(mosquitto: Any) -> Any:
    """Anonymous access on a free port."""
    return mosquitto()


def publish(port: int, topic: str, **credentials: Any) -> None:
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=port, **credentials),
        [OutgoingMessage(topic=topic, payload=b"x", qos=1)],
    )


def stored(broker: Broker, topic: str) -> bool:
    return StoredMessage.objects.filter(broker_id=broker.pk, topic=topic).exists()


def disabled_with_error(subscription: Subscription) -> str:
    row = Subscription.objects.get(pk=subscription.pk)
    return row.last_error if not row.enabled else ""


@pytest.mark.parametrize(("protocol", "code"), [("5", "0x87"), ("3.1.1", "0x80")])
@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sqlite_readers_do_not_wait")
def test_a_subscription_the_broker_refuses_is_disabled_and_the_others_go_on(
    world: dict,
    dynsec_broker: ManagedProcess,  # noqa: F811
    start_runtime: Any,
    protocol: str,
    code: str,
) -> None:
    """The portal connects as an account whose role may read allowed/# only."""
    with DynsecSession(admin_settings(dynsec_broker.managed)) as session:
        session.check(
            [
                {"command": "createClient", "username": "portal", "password": "Pw-1"},
                {"command": "createRole", "rolename": "reader"},
                *[
                    {
                        "command": "addRoleACL",
                        "rolename": "reader",
                        "acltype": acltype,
                        "topic": "allowed/#",
                        "allow": True,
                    }
                    for acltype in ("subscribePattern", "publishClientSend")
                ],
                {
                    "command": "addClientRole",
                    "username": "portal",
                    "rolename": "reader",
                },
            ]
        )
    broker = retrying(
        services.broker_update,
        actor=None,
        broker=dynsec_broker.broker,
        username="portal",
        password="Pw-1",
        protocol=protocol,
        enabled=True,
    )
    operator = world["users"]["operator"]
    good = retrying(
        services.subscription_create,
        actor=operator,
        broker=broker,
        name="good",
        topic_filter="allowed/#",
    )
    refused = retrying(
        services.subscription_create,
        actor=operator,
        broker=broker,
        name="refused",
        topic_filter="denied/#",
    )
    start_runtime("w-refused")

    error = wait_until(lambda: disabled_with_error(refused), 10, "refused disabled")
    assert code in error and "refused" in error
    publish(dynsec_broker.port, "allowed/x", username="portal", password="Pw-1")
    wait_until(lambda: stored(broker, "allowed/x"), 10, "the others still receive")
    status = BrokerStatus.objects.get(broker=broker)
    assert status.state == "connected" and status.last_disconnected_at is None
    assert Subscription.objects.get(pk=good.pk).enabled

    # The reason is shown in the API and on the Subscriptions tab.
    body = as_user(operator).get(f"/api/v1/subscriptions/{refused.pk}/").json()
    assert body["enabled"] is False and code in body["last_error"]
    page = logged_in(operator, world["product"]).get(
        reverse("brokers:detail", args=[broker.pk]) + "?tab=subscriptions"
    )
    assert code in page.content.decode()


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sqlite_readers_do_not_wait")
def test_old_rows_the_broker_would_disconnect_on_are_isolated(
    world: dict, plain_broker: Any, start_runtime: Any
) -> None:
    """Rows from before the rules (written around validation) are never sent:
    they are disabled with the reason, and the connection never drops."""
    broker = retrying(
        services.broker_create,
        actor=None,
        product=world["product"],
        name="Plant",
        host="127.0.0.1",
        port=plain_broker.port,
    )
    retrying(
        services.subscription_create,
        actor=None,
        broker=broker,
        name="good",
        topic_filter="plant/#",
    )
    deep, group = retrying(
        Subscription.objects.bulk_create,
        [
            Subscription(broker=broker, name="deep", topic_filter=DEEP),
            Subscription(
                broker=broker, name="group", topic_filter="x/#", shared_group="g\x01"
            ),
        ],
    )
    start_runtime("w-old-rows")

    deep_error = wait_until(lambda: disabled_with_error(deep), 10, "deep disabled")
    group_error = wait_until(lambda: disabled_with_error(group), 10, "group disabled")
    assert "at most 200" in deep_error and "control characters" in group_error
    wait_until(lambda: BrokerStatus.objects.get(broker=broker).state == "connected", 10)
    publish(plain_broker.port, "plant/x")
    wait_until(lambda: stored(broker, "plant/x"), 10, "the others still receive")
    assert BrokerStatus.objects.get(broker=broker).last_disconnected_at is None


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
def test_a_filter_the_broker_disconnects_on_is_given_up_by_the_session(
    world: dict, plain_broker: Any
) -> None:
    """Past validation (another broker's stricter rules, say): the filter whose
    SUBSCRIBE the broker answers by closing the connection, twice, is given up and
    reported; the session then stays connected with the others."""
    broker = services.broker_create(
        actor=None,
        product=world["product"],
        name="Plant",
        host="127.0.0.1",
        port=plain_broker.port,
        enabled=False,
    )
    messages: MessageQueue[Delivery] = MessageQueue(maxsize=100)
    events: queue.Queue[StatusEvent] = queue.Queue()
    session = BrokerSession(
        broker,
        {"plant/#": 0, DEEP: 0},
        owner="test",
        messages=messages,
        events=events,
        wake=lambda: None,
    )
    session.start()
    refused: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 15
        while DEEP not in refused:
            assert time.monotonic() < deadline, "the bad filter was never given up"
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                continue
            refused.update(event.fields.get("refused", {}))
        assert "closed the connection" in refused[DEEP]
        wait_until(lambda: "plant/#" in session.subscribed, 10, "subscribed again")
        publish(plain_broker.port, "plant/x")
        received = wait_until(lambda: messages.get_many(10, timeout=0.2), 10)
        assert [d.message.topic for d in received] == ["plant/x"]
        assert session.connected and DEEP not in session.subscribed
    finally:
        session.close()
    assert set(refused) == {DEEP}
