"""What the broker answered to each subscription: refused by its ACL (SUBACK
0x80 / 0x87) or granted at a lower QoS than asked (Mosquitto's `max_qos`), shown
on the Subscriptions tab and in the API, with the broker's subscribed count
counting only granted filters."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from acl.backends.dynsec import DynsecSession, admin_settings
from brokers import services
from brokers.models import Broker, BrokerStatus, Subscription
from tests.acl.conftest import ManagedProcess, dynsec_broker  # noqa: F401 (fixture)
from tests.clients import as_user, logged_in
from tests.factories import make_broker, make_subscription
from tests.runtime_support import retrying, wait_until

PORTAL_USER, PORTAL_PASSWORD = "portal", "Pw-1"


def dynsec_account(managed: ManagedProcess, acls: list[tuple[str, str]]) -> None:
    """An account `portal` whose role allows exactly `acls` (acltype, topic)."""
    with DynsecSession(admin_settings(managed.managed)) as session:
        session.check(
            [
                {
                    "command": "createClient",
                    "username": PORTAL_USER,
                    "password": PORTAL_PASSWORD,
                },
                {"command": "createRole", "rolename": "reader"},
                *[
                    {
                        "command": "addRoleACL",
                        "rolename": "reader",
                        "acltype": acltype,
                        "topic": topic,
                        "allow": True,
                    }
                    for acltype, topic in acls
                ],
                {
                    "command": "addClientRole",
                    "username": PORTAL_USER,
                    "rolename": "reader",
                },
            ]
        )


def row(subscription: Subscription) -> Subscription:
    return Subscription.objects.get(pk=subscription.pk)


def table_row(html: str, subscription: Subscription) -> str:
    found = re.search(
        rf'<tr id="subscription-{subscription.pk}">(.*?)</tr>', html, re.DOTALL
    )
    assert found, f"no row for subscription {subscription.pk}"
    return found.group(1)


def subscriptions_tab(user: Any, world: dict, broker: Broker) -> str:
    page = logged_in(user, world["product"]).get(
        reverse("brokers:detail", args=[broker.pk]) + "?tab=subscriptions"
    )
    assert page.status_code == 200
    return page.content.decode()


@pytest.mark.parametrize(("protocol", "code"), [("5", "0x87"), ("3.1.1", "0x80")])
@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sqlite_readers_do_not_wait")
def test_refused_subscription_is_shown_and_not_counted(
    world: dict,
    dynsec_broker: ManagedProcess,  # noqa: F811
    start_runtime: Any,
    protocol: str,
    code: str,
) -> None:
    dynsec_account(
        dynsec_broker,
        [("subscribePattern", "allowed/#"), ("subscribePattern", "more/#")],
    )
    broker = retrying(
        services.broker_update,
        actor=None,
        broker=dynsec_broker.broker,
        username=PORTAL_USER,
        password=PORTAL_PASSWORD,
        protocol=protocol,
        enabled=True,
    )
    operator = world["users"]["operator"]
    good = retrying(
        make_subscription, broker, name="good", topic_filter="allowed/#", qos=1
    )
    more = retrying(make_subscription, broker, name="more", topic_filter="more/+")
    refused = retrying(
        make_subscription, broker, name="refused", topic_filter="denied/#", qos=1
    )
    start_runtime("w-refusals")

    wait_until(lambda: row(refused).refused_reason, 10, "the refusal stored")
    wait_until(
        lambda: BrokerStatus.objects.get(broker=broker).subscribed_topics_count == 2,
        10,
        "only the two granted filters counted",
    )
    stored = row(refused)
    assert not stored.enabled and stored.granted_qos is None
    assert code in stored.refused_reason and "refused" in stored.refused_reason
    wait_until(lambda: row(good).granted_qos == 1, 10, "granted QoS stored")
    assert row(more).granted_qos == 0 and row(good).refused_reason == ""

    body = as_user(operator).get(f"/api/v1/subscriptions/{refused.pk}/").json()
    assert body["enabled"] is False and body["granted_qos"] is None
    assert code in body["refused_reason"]
    good_body = as_user(operator).get(f"/api/v1/subscriptions/{good.pk}/").json()
    assert good_body["granted_qos"] == 1 and good_body["refused_reason"] == ""
    status = as_user(operator).get(f"/api/v1/brokers/{broker.pk}/status/").json()
    assert status["subscribed_topics_count"] == 2

    html = subscriptions_tab(operator, world, broker)
    assert "Refused" in table_row(html, refused)
    assert code in table_row(html, refused)
    assert "Refused" not in table_row(html, good)


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sqlite_readers_do_not_wait")
def test_a_lower_granted_qos_is_shown_and_forgotten_when_disabled(
    world: dict, mosquitto: Any, start_runtime: Any
) -> None:
    capped = mosquitto("max_qos 1\n")
    broker = retrying(make_broker, world["product"], port=capped.port)
    operator = world["users"]["operator"]
    asked_two = retrying(
        make_subscription, broker, name="two", topic_filter="plant/#", qos=2
    )
    asked_zero = retrying(
        make_subscription, broker, name="zero", topic_filter="other/#", qos=0
    )
    start_runtime("w-granted")

    wait_until(lambda: row(asked_two).granted_qos == 1, 10, "granted 1 for 2")
    wait_until(lambda: row(asked_zero).granted_qos == 0, 10, "granted 0 for 0")
    body = as_user(operator).get(f"/api/v1/subscriptions/{asked_two.pk}/").json()
    assert body["qos"] == 2 and body["granted_qos"] == 1
    html = subscriptions_tab(operator, world, broker)
    assert "granted 1" in table_row(html, asked_two)
    assert "granted" not in table_row(html, asked_zero)

    # Disabled: the broker's old answer no longer describes anything.
    retrying(
        services.subscription_update,
        actor=operator,
        subscription=row(asked_two),
        enabled=False,
    )
    assert row(asked_two).granted_qos is None
    wait_until(
        lambda: BrokerStatus.objects.get(broker=broker).subscribed_topics_count == 1,
        10,
        "the disabled one unsubscribed",
    )
    assert row(asked_two).granted_qos is None
    assert "granted" not in table_row(
        subscriptions_tab(operator, world, broker), asked_two
    )
    # Enabled again at QoS 1: the broker grants what was asked.
    retrying(
        services.subscription_update,
        actor=operator,
        subscription=row(asked_two),
        enabled=True,
        qos=1,
    )
    wait_until(lambda: row(asked_two).granted_qos == 1, 10, "granted again")


@pytest.mark.django_db
def test_changing_a_subscription_forgets_the_brokers_answer(world: dict) -> None:
    broker = make_broker(world["product"], port=1, enabled=False)
    subscription = make_subscription(broker, topic_filter="plant/#", qos=2)
    operator = world["users"]["operator"]
    for change in ({"qos": 1}, {"topic_filter": "plant/+"}, {"enabled": False}):
        Subscription.objects.filter(pk=subscription.pk).update(
            granted_qos=1, refused_reason="refused"
        )
        services.subscription_update(
            actor=operator, subscription=row(subscription), **change
        )
        after = row(subscription)
        assert (after.granted_qos, after.refused_reason) == (None, ""), change
    # A change the broker never sees (the name) keeps its answer.
    Subscription.objects.filter(pk=subscription.pk).update(granted_qos=1)
    services.subscription_update(
        actor=operator, subscription=row(subscription), name="renamed"
    )
    assert row(subscription).granted_qos == 1
