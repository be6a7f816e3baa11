"""The brokers tests' real Mosquitto fixtures, for the runtime tests too."""

from tests.brokers.conftest import (
    password_broker,
    plain_broker,
    tls_broker,
    tls_material,
)

__all__ = ["password_broker", "plain_broker", "tls_broker", "tls_material"]
