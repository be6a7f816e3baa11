"""The runtime rides out a foreign broker's restart."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.support import (
    connected_broker,
    publish_in_order,
    stored_topics,
    wait_stored,
)
from tests.runtime_support import status_of, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]


def test_runtime_reconnects_after_a_restart_and_stores_new_messages(
    actor: Any, broker_process: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = connected_broker(
        actor, broker_process.port, subscriptions={"plant": "plant/#"}
    )
    publish_in_order(broker_process.port, "plant/before")
    wait_stored(broker, "plant/before")

    broker_process.stop()
    wait_until(
        lambda: status_of(broker).state != "connected", 10, "the loss to be seen"
    )
    broker_process.start()
    wait_until(
        lambda: (
            status_of(broker).state == "connected"
            and status_of(broker).subscribed_topics_count == 1
        ),
        20,
        "connected and subscribed again",
    )

    publish_in_order(broker_process.port, "plant/after")
    wait_stored(broker, "plant/after")
    assert stored_topics(broker) == ["plant/after", "plant/before"]
