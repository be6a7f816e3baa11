"""The broker compatibility matrix: every test runs once per foreign broker.

What each broker does differently is written down once, in `BROKER_FACTS` (the
README's "Broker compatibility" table says the same), and checked against the real
broker: a test asserts the portal's own behaviour where the broker supports the
feature and the broker's documented behaviour where it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.brokers.conftest import tls_material
from tests.factories import make_product, make_superuser
from tests.foreign_brokers import FOREIGN_BROKERS, ForeignBrokerProcess

__all__ = ["tls_material"]


@dataclass(frozen=True)
class BrokerFacts:
    # Accepts MQTT 5 CONNECTs (all three answer "unsupported protocol version").
    mqtt5: bool
    # Accepts QoS 2 publishes (NATS closes the connection instead).
    qos2: bool
    # Delivers `$share/<group>/<filter>` subscriptions.
    shared_subscriptions: bool
    # Retained messages are still there after a restart (NATS keeps them in
    # JetStream; aedes and amqtt hold them in memory).
    retained_survive_restart: bool
    # Delivers at the subscription's QoS instead of min(publish, subscription).
    delivers_at_subscription_qos: bool
    # `#` also matches `$`-topics (NATS: its own `$JS/…`, `$MQTT/…` traffic).
    hash_matches_dollar_topics: bool


BROKER_FACTS: dict[str, BrokerFacts] = {
    "nats": BrokerFacts(
        mqtt5=False,
        qos2=False,
        shared_subscriptions=False,
        retained_survive_restart=True,
        delivers_at_subscription_qos=False,
        hash_matches_dollar_topics=True,
    ),
    "amqtt": BrokerFacts(
        mqtt5=False,
        qos2=True,
        shared_subscriptions=False,
        retained_survive_restart=False,
        delivers_at_subscription_qos=True,
        hash_matches_dollar_topics=False,
    ),
    "aedes": BrokerFacts(
        mqtt5=False,
        qos2=True,
        shared_subscriptions=False,
        retained_survive_restart=False,
        delivers_at_subscription_qos=False,
        hash_matches_dollar_topics=False,
    ),
}
assert set(BROKER_FACTS) == set(FOREIGN_BROKERS)


@pytest.fixture(params=sorted(FOREIGN_BROKERS))
def kind(request: Any) -> str:
    """The foreign broker under test, by name."""
    return str(request.param)


@pytest.fixture
def facts(kind: str) -> BrokerFacts:
    return BROKER_FACTS[kind]


@pytest.fixture
def broker_process(foreign_broker: Any, kind: str) -> ForeignBrokerProcess:
    """A plain (anonymous, no TLS) broker of `kind` on a free port."""
    return foreign_broker(kind)


@pytest.fixture
def actor(db: Any) -> Any:
    """A superuser who also administers a product (testing settings that are not
    saved needs the operator role in some product)."""
    user = make_superuser()
    make_product(admin=user)
    return user
