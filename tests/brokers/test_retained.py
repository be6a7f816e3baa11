"""Retained messages listed from and cleared on a real broker."""

from __future__ import annotations

import pytest

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.retained import retained_clear, retained_list

pytestmark = pytest.mark.mosquitto


def retain(settings: ConnectionSettings, *pairs: tuple[str, bytes]) -> None:
    publish_messages(
        settings, [OutgoingMessage(t, p, qos=1, retain=True) for t, p in pairs]
    )


def test_retained_messages_are_listed(plain_broker) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    retain(settings, ("home/a", b"1"), ("home/b/c", b"2"), ("other", b"3"))
    publish_messages(settings, [OutgoingMessage("home/not-retained", b"x", qos=1)])
    found = {m.topic: m.payload for m in retained_list(settings)}
    assert found == {"home/a": b"1", "home/b/c": b"2", "other": b"3"}
    assert [m.topic for m in retained_list(settings, "home/+")] == ["home/a"]


def test_clear_one_topic_or_a_subtree(plain_broker) -> None:
    settings = ConnectionSettings(
        host="127.0.0.1", port=plain_broker.port, protocol="5"
    )
    retain(settings, ("home", b"0"), ("home/a", b"1"), ("home/b/c", b"2"), ("x", b"3"))
    assert retained_clear(settings, "x") == ["x"]
    assert {m.topic for m in retained_list(settings)} == {"home", "home/a", "home/b/c"}
    cleared = retained_clear(settings, "home", recursive=True)
    assert cleared == ["home", "home/a", "home/b/c"]
    assert retained_list(settings) == []
