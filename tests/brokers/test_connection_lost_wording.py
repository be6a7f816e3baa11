"""The status of a connection the broker went away from says "Connection lost",
not paho's "Unspecified error"."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import make_superuser
from tests.runtime_support import running_broker, state_is, status_of, wait_until

pytestmark = pytest.mark.mosquitto


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_broker_shutdown_reads_as_connection_lost(
    plain_broker: Any, start_runtime: Any, protocol: str
) -> None:
    start_runtime()
    broker = running_broker(make_superuser(), plain_broker.port, protocol=protocol)
    wait_until(state_is(broker, "connected"), 10, "connected")

    plain_broker.stop()

    # The first error after the shutdown; "Connection refused" follows a second
    # later, when the runtime tries again.
    error = wait_until(
        lambda: status_of(broker).connection_error, 10, "an error on the status"
    )
    # Mosquitto 2.0 closes the socket without a DISCONNECT, on MQTT 5 too.
    assert error == "Connection lost"
