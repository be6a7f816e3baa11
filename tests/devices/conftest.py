"""Fixtures of the devices tests: the real Mosquitto brokers of the brokers tests."""

from tests.brokers.conftest import plain_broker  # noqa: F401 (a fixture)
