"""Leases: one runtime owns a broker; a dead owner's brokers are taken over."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker
from runtime.lease import LeaseKeeper
from runtime.models import RuntimeLease
from tests.factories import make_product
from tests.runtime import test_runtime as runtime_tests
from tests.runtime_support import running_broker, state_is, status_of, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]

# The runtime tests' fixture, shared without a conftest of our own.
actor = runtime_tests.actor


def _broker_ids(count: int) -> list[int]:
    product = make_product()
    return [
        Broker.objects.create(product=product, name=f"b{i}", host="h", port=1883).pk
        for i in range(count)
    ]


def test_only_one_keeper_gets_a_free_broker() -> None:
    [broker_id] = _broker_ids(1)
    first = LeaseKeeper("k1", ttl=5, renew_every=1)
    second = LeaseKeeper("k2", ttl=5, renew_every=1)

    assert first.sync({broker_id}) == {broker_id}
    assert second.sync({broker_id}) == set()
    assert RuntimeLease.objects.get(broker_id=broker_id).owner == "k1"


def test_an_expired_lease_is_taken_over_and_the_old_owner_lets_go() -> None:
    [broker_id] = _broker_ids(1)
    first = LeaseKeeper("k1", ttl=5, renew_every=1)
    second = LeaseKeeper("k2", ttl=5, renew_every=1)
    first.sync({broker_id})
    RuntimeLease.objects.filter(broker_id=broker_id).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )

    assert second.sync({broker_id}) == {broker_id}
    # k1 renews late: the row is no longer its own, so it drops the broker.
    first._next_renew = 0.0
    assert first.sync({broker_id}) == set()
    assert RuntimeLease.objects.get(broker_id=broker_id).owner == "k2"


def test_renewing_moves_the_expiry_forward() -> None:
    [broker_id] = _broker_ids(1)
    keeper = LeaseKeeper("k1", ttl=5, renew_every=0.1)
    keeper.sync({broker_id})
    before = RuntimeLease.objects.get(broker_id=broker_id).expires_at
    time.sleep(0.2)

    keeper.sync({broker_id})
    assert RuntimeLease.objects.get(broker_id=broker_id).expires_at > before


def test_unwanted_and_released_leases_are_deleted() -> None:
    one, two = _broker_ids(2)
    keeper = LeaseKeeper("k1", ttl=5, renew_every=1)
    assert keeper.sync({one, two}) == {one, two}

    assert keeper.sync({one}) == {one}
    assert list(RuntimeLease.objects.values_list("broker_id", flat=True)) == [one]
    keeper.release()
    assert not RuntimeLease.objects.exists()


def test_renewal_must_be_more_frequent_than_expiry() -> None:
    with pytest.raises(ValueError):
        LeaseKeeper("k", ttl=1, renew_every=1)


@pytest.mark.mosquitto
def test_one_of_two_runtimes_owns_a_broker_and_the_other_takes_over(
    plain_broker: Any,
    actor: Any,
    start_runtime: Any,
) -> None:
    runtimes = {
        name: start_runtime(name, lease_ttl=3, lease_renew=1) for name in ("w1", "w2")
    }
    broker = running_broker(actor, plain_broker.port)
    wait_until(state_is(broker, "connected"), 10, "connected")
    owner = status_of(broker).owner
    assert owner in runtimes
    other = "w2" if owner == "w1" else "w1"

    # Several lease periods: no flapping, one session in all.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert status_of(broker).owner == owner
        assert status_of(broker).state == "connected"
        assert RuntimeLease.objects.get(broker=broker).owner == owner
        assert set(runtimes[owner].sessions) == {broker.pk}
        assert not runtimes[other].sessions
        time.sleep(0.2)

    killed_at = time.monotonic()
    runtimes[owner].stop(release=False)
    wait_until(state_is(broker, "connected", owner=other), 30, "taken over")
    # About the lease TTL, far below the 30 s promised.
    assert time.monotonic() - killed_at < 10


@pytest.mark.mosquitto
def test_a_stopping_runtime_hands_over_at_once(
    plain_broker: Any,
    actor: Any,
    start_runtime: Any,
) -> None:
    first = start_runtime("w1", lease_ttl=30, lease_renew=10)
    broker = running_broker(actor, plain_broker.port)
    wait_until(state_is(broker, "connected", owner="w1"), 10, "w1 connected")
    start_runtime("w2", lease_ttl=30, lease_renew=10)

    first.stop()
    wait_until(state_is(broker, "connected", owner="w2"), 5, "w2 connected")
