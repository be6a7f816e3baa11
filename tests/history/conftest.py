"""The brokers tests' real Mosquitto fixtures, for the history tests too."""

from tests.brokers.conftest import plain_broker

__all__ = ["plain_broker"]
