"""Nobody below product admin reaches a broker's control API ($CONTROL) through the
portal, and nobody publishes to the broker's other `$` topics.

The portal's connection to a Dynamic Security broker may hold the plugin's admin
account: a `createClient` command published on `$CONTROL/dynamic-security/v1`
through the portal would make a new broker admin. Every test below performs that
attack on a real Mosquitto with the plugin, as an operator, through one path (the
publish API, the Publish tab, the live socket, a publish template, a republish
action, a device's command topic, retained clearing), and checks the refusal and
that the broker's client list did not change.
"""

from __future__ import annotations

import json
import time

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone

from acl.backends.dynsec import DynsecSession, admin_settings
from actions.models import ActionRun, ActionRunState
from actions.runner import run_action_batch
from brokers import services
from brokers.models import PublishTemplate, Subscription
from devices.models import Device
from mqttadmin.models import AuditEntry
from tests.acl.conftest import ManagedProcess, dynsec_broker  # noqa: F401 (fixture)
from tests.clients import HTMX, as_user, logged_in
from tests.live.conftest import receive_until, socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mosquitto]

CONTROL = "$CONTROL/dynamic-security/v1"


def create_client_command(username: str) -> str:
    return json.dumps(
        {
            "commands": [
                {
                    "command": "createClient",
                    "username": username,
                    "password": "Evil-pass-123",
                    "correlationData": "attack",
                }
            ]
        }
    )


def broker_clients(managed: ManagedProcess) -> list[str]:
    """`listClients` on the real broker, with the plugin's admin account."""
    with DynsecSession(admin_settings(managed.managed)) as session:
        clients, _roles = session.list_names()
    return sorted(clients)


def settled_clients(managed: ManagedProcess) -> list[str]:
    """The client list once a command sent just now would have been applied."""
    time.sleep(0.3)
    return broker_clients(managed)


@pytest.fixture
def dynsec(dynsec_broker: ManagedProcess) -> ManagedProcess:  # noqa: F811
    return dynsec_broker


# --- The publish API ------------------------------------------------------------------


def test_operator_cannot_create_a_broker_admin_through_the_publish_api(
    world: dict, dynsec: ManagedProcess
) -> None:
    before = broker_clients(dynsec)
    client = as_user(world["users"]["operator"])
    url = f"/api/v1/brokers/{dynsec.broker.pk}/publish/"
    single = client.post(
        url,
        {"topic": CONTROL, "payload": create_client_command("evil1")},
        format="json",
    )
    batch = client.post(
        url,
        {
            "messages": [
                {"topic": "plant/ok", "payload": "x"},
                {"topic": CONTROL, "payload": create_client_command("evil2")},
            ]
        },
        format="json",
    )
    assert single.status_code == 400 and "control API" in single.json()["topic"][0]
    assert batch.status_code == 400 and "messages[1].topic" in batch.json()
    assert settled_clients(dynsec) == before
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


def test_admin_still_manages_the_broker_through_the_publish_api(
    world: dict, dynsec: ManagedProcess
) -> None:
    """The product admin manages the broker: the same request works for them (and
    shows the attack above would have worked without the guard)."""
    response = as_user(world["users"]["admin"]).post(
        f"/api/v1/brokers/{dynsec.broker.pk}/publish/",
        {"topic": CONTROL, "payload": create_client_command("made-by-admin")},
        format="json",
    )
    assert response.status_code == 200, response.content
    deadline = time.monotonic() + 5
    while "made-by-admin" not in broker_clients(dynsec):
        assert time.monotonic() < deadline, "the admin's command was not applied"
        time.sleep(0.1)


@pytest.mark.parametrize("topic", ["$SYS/broker/fake", "$share/g/x", "$foo/bar"])
def test_nobody_publishes_to_the_brokers_other_dollar_topics(
    world: dict, dynsec: ManagedProcess, topic: str
) -> None:
    response = as_user(world["users"]["superuser"]).post(
        f"/api/v1/brokers/{dynsec.broker.pk}/publish/",
        {"topic": topic, "payload": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert "$" in response.json()["topic"][0]
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


# --- The Publish tab and publish templates --------------------------------------------


def test_operator_cannot_publish_to_control_from_the_publish_tab(
    world: dict, dynsec: ManagedProcess
) -> None:
    before = broker_clients(dynsec)
    client = logged_in(world["users"]["operator"], world["product"])
    response = client.post(
        reverse("brokers:publish", args=[dynsec.broker.pk]),
        {
            "topic": CONTROL,
            "payload": create_client_command("evil3"),
            "encoding": "utf8",
            "qos": "0",
        },
        **HTMX,
    )
    assert response.status_code == 200
    assert "control API" in response.content.decode()
    assert settled_clients(dynsec) == before
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


def test_operator_cannot_publish_an_admins_control_template(
    world: dict, dynsec: ManagedProcess
) -> None:
    """A template an admin saved for the broker's control API stays the admin's."""
    before = broker_clients(dynsec)
    template = services.publish_template_save(
        actor=world["users"]["admin"],
        broker=dynsec.broker,
        name="make user",
        topic=CONTROL,
        payload=create_client_command("evil4"),
    )
    client = logged_in(world["users"]["operator"], world["product"])
    response = client.post(
        reverse("brokers:publish", args=[dynsec.broker.pk]),
        {"template": str(template.pk)},
        **HTMX,
    )
    assert "control API" in response.content.decode()
    assert settled_clients(dynsec) == before


def test_operator_cannot_save_a_control_template(
    world: dict, dynsec: ManagedProcess
) -> None:
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/publish-templates/",
        {
            "broker": dynsec.broker.pk,
            "name": "t",
            "topic": CONTROL,
            "payload": create_client_command("evil5"),
        },
        format="json",
    )
    assert response.status_code == 400 and "topic" in response.json()
    page = logged_in(world["users"]["operator"], world["product"]).post(
        reverse("brokers:template-save", args=[dynsec.broker.pk]),
        {"topic": CONTROL, "payload": "{}", "encoding": "utf8", "qos": "0"}
        | {"template_name": "t2"},
        **HTMX,
    )
    assert "control API" in page.content.decode()
    assert not PublishTemplate.objects.exists()


# --- The live socket ------------------------------------------------------------------


def test_operator_cannot_publish_to_control_over_the_socket(
    world: dict, dynsec: ManagedProcess
) -> None:
    before = broker_clients(dynsec)
    client = logged_in(world["users"]["operator"], world["product"])
    result: list[str] = []

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{dynsec.broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        await communicator.send_json_to(
            {
                "action": "publish",
                "topic": CONTROL,
                "payload": create_client_command("evil6"),
            }
        )
        result.append(
            await receive_until(communicator, lambda f: "live-publish-result" in f)
        )
        await communicator.disconnect()

    async_to_sync(scenario)()
    assert "control API" in result[0]
    assert settled_clients(dynsec) == before
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


# --- Republish actions ----------------------------------------------------------------


def test_nobody_saves_a_republish_to_dollar_topics(
    world: dict, dynsec: ManagedProcess
) -> None:
    """Decided: a republish runs with nobody behind it, its topic rendered from
    message data, so not even an admin saves one to a `$` topic."""
    for who, topic in [
        ("operator", CONTROL),
        ("admin", CONTROL),
        ("admin", "{% if 1 %}$CONTROL{% endif %}/dynamic-security/v1"),
        ("admin", "  $SYS/x"),
    ]:
        response = as_user(world["users"][who]).post(
            "/api/v1/subscriptions/",
            {
                "broker": dynsec.broker.pk,
                "name": f"relay {who} {topic}",
                "topic_filter": "plant/#",
                "actions": [{"type": "republish", "topic": topic, "payload": "x"}],
            },
            format="json",
        )
        assert response.status_code == 400, (who, topic)
        assert "actions[0].topic" in str(response.json()), response.json()
    assert not Subscription.objects.exists()


def test_a_republish_rendered_to_control_fails_at_run_time(
    world: dict, dynsec: ManagedProcess
) -> None:
    """A topic template filled from the message (here by whoever may publish on
    plant/#) is checked again when it runs; the run fails and says why."""
    before = broker_clients(dynsec)
    subscription = services.subscription_create(
        actor=world["users"]["operator"],
        broker=dynsec.broker,
        name="relay",
        topic_filter="plant/#",
        actions=[
            {
                "type": "republish",
                "topic": "{{ payload.to }}",
                "payload": "{{ payload.body }}",
            }
        ],
    )
    message = {"to": CONTROL, "body": create_client_command("evil7")}
    run = ActionRun.objects.create(
        subscription=subscription,
        topic="plant/x",
        payload=json.dumps(message).encode(),
        received_at=timezone.now(),
    )
    totals = run_action_batch([run.pk])
    run.refresh_from_db()
    subscription.refresh_from_db()
    assert totals == {"executed": 0, "failed": 1}
    assert run.state == ActionRunState.FAILED
    assert "starts with $" in run.error and "starts with $" in subscription.last_error
    assert settled_clients(dynsec) == before


# --- Device commands ------------------------------------------------------------------


def test_operator_cannot_point_a_device_command_at_control(
    world: dict, dynsec: ManagedProcess
) -> None:
    client = as_user(world["users"]["operator"])
    response = client.post(
        "/api/v1/devices/",
        {
            "product": world["product"].pk,
            "broker": dynsec.broker.pk,
            "device_id": "d1",
            "name": "Pump",
            "topic": "plant/d1",
            "command_topic": CONTROL,
        },
        format="json",
    )
    assert response.status_code == 400 and "command_topic" in response.json()
    assert not Device.objects.exists()


def test_a_device_command_to_control_is_refused_when_sent(
    world: dict, dynsec: ManagedProcess
) -> None:
    """A device row from before the rule (written around validation)."""
    before = broker_clients(dynsec)
    device = Device.objects.create(
        product=world["product"],
        broker=dynsec.broker,
        device_id="d1",
        name="Pump",
        topic="plant/d1",
        command_topic=CONTROL,
    )
    response = as_user(world["users"]["operator"]).post(
        f"/api/v1/devices/{device.pk}/command/",
        {"payload": json.loads(create_client_command("evil8"))},
        format="json",
    )
    assert response.status_code == 400 and "control API" in str(response.json())
    assert settled_clients(dynsec) == before
    assert not AuditEntry.objects.filter(action="device.command").exists()


# --- Retained clearing and subscriptions ----------------------------------------------


def test_operator_cannot_clear_retained_control_topics(
    world: dict, dynsec: ManagedProcess
) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        services.broker_retained_clear(
            actor=world["users"]["operator"],
            broker=dynsec.broker,
            topic=CONTROL,
            recursive=False,
        )
    assert "topic" in caught.value.message_dict


@pytest.mark.parametrize(
    ("topic_filter", "shared_group"),
    [
        ("$CONTROL/#", ""),
        ("$CONTROL/dynamic-security/v1", ""),
        ("$share/g/$CONTROL/#", ""),
        ("$CONTROL/#", "workers"),
    ],
)
def test_operator_cannot_subscribe_to_control(
    world: dict, dynsec: ManagedProcess, topic_filter: str, shared_group: str
) -> None:
    """Its requests carry new MQTT passwords in clear."""
    api = as_user(world["users"]["operator"]).post(
        "/api/v1/subscriptions/",
        {
            "broker": dynsec.broker.pk,
            "name": "spy",
            "topic_filter": topic_filter,
            "shared_group": shared_group,
        },
        format="json",
    )
    assert api.status_code == 400 and "topic_filter" in api.json(), api.content
    page = logged_in(world["users"]["operator"], world["product"]).post(
        reverse("brokers:subscription-create", args=[dynsec.broker.pk]),
        {"name": "spy", "topic_filter": topic_filter, "qos": "0"},
        **HTMX,
    )
    assert "control API" in page.content.decode()
    assert not Subscription.objects.exists()


def test_operator_cannot_re_enable_an_admins_control_subscription(
    world: dict, dynsec: ManagedProcess
) -> None:
    subscription = services.subscription_create(
        actor=world["users"]["admin"],
        broker=dynsec.broker,
        name="dynsec replies",
        topic_filter="$CONTROL/dynamic-security/v1/response",
        enabled=False,
    )
    response = as_user(world["users"]["operator"]).patch(
        f"/api/v1/subscriptions/{subscription.pk}/", {"enabled": True}, format="json"
    )
    assert response.status_code == 400 and "topic_filter" in response.json()
    subscription.refresh_from_db()
    assert subscription.enabled is False
