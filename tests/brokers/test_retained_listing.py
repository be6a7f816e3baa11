"""Listing retained messages tells the truth about what the broker holds: the QoS
each was stored with, whether the list is complete, and which topics a clear
really emptied."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.retained import (
    Incomplete,
    SubscriptionRefused,
    retained_clear,
    retained_list,
    retained_listing,
)
from tests.acl.conftest import ManagedProcess, dynsec_broker  # noqa: F401 (fixture)
from tests.brokers.test_subscription_refusals import (
    PORTAL_PASSWORD,
    PORTAL_USER,
    dynsec_account,
)
from tests.clients import HTMX, as_user, logged_in
from tests.factories import make_broker
from tests.runtime_support import wait_until

pytestmark = pytest.mark.mosquitto


def retain(settings: ConnectionSettings, *messages: tuple[str, bytes, int]) -> None:
    publish_messages(
        settings,
        [OutgoingMessage(t, p, qos=q, retain=True) for t, p, q in messages],
    )


def many_retained(settings: ConnectionSettings, count: int) -> None:
    retain(settings, *((f"fleet/{i:05d}", b"x" * 100, 1) for i in range(count)))


class CuttingProxy:
    """A TCP relay to the broker that closes the connection once it has passed
    `cut_after` bytes from the broker: a connection dropping mid-listing."""

    def __init__(self, broker_port: int, cut_after: int) -> None:
        self.broker_port = broker_port
        self.cut_after = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.broker_port))
            threading.Thread(
                target=self._pipe, args=(client, upstream, None), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, self.cut_after), daemon=True
            ).start()

    def _pipe(
        self, source: socket.socket, sink: socket.socket, cut: int | None
    ) -> None:
        passed = 0
        try:
            while True:
                data = source.recv(512)
                if not data:
                    break
                if cut is not None and passed + len(data) >= cut:
                    sink.sendall(data[: cut - passed])
                    self.cuts += 1
                    break
                passed += len(data)
                sink.sendall(data)
        except OSError:
            pass  # the other direction closed the sockets first
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cutting_proxy(plain_broker: Any) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(plain_broker.port, cut_after=4000)
    yield proxy
    proxy.close()


def test_each_entry_shows_the_qos_it_was_retained_with(plain_broker: Any) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    retain(settings, ("q/0", b"a", 0), ("q/1", b"b", 1), ("q/2", b"c", 2))
    assert [(m.topic, m.qos) for m in retained_list(settings)] == [
        ("q/0", 0),
        ("q/1", 1),
        ("q/2", 2),
    ]


def test_a_complete_listing_says_so(plain_broker: Any) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    retain(settings, ("a", b"1", 1), ("b", b"2", 1))
    listing = retained_listing(settings, limit=2)
    assert [m.topic for m in listing.messages] == ["a", "b"]
    assert listing.complete and listing.incomplete == ""


def test_more_messages_than_the_limit_is_incomplete(plain_broker: Any) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    retain(settings, ("a", b"1", 1), ("b", b"2", 1), ("c", b"3", 1))
    listing = retained_listing(settings, limit=2)
    assert len(listing.messages) == 2
    assert listing.incomplete == Incomplete.LIMIT


def test_broker_still_sending_at_the_timeout_is_incomplete(plain_broker: Any) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    retain(settings, ("a", b"1", 1))
    # Never quiet for 30 s within 3 s: the listing cannot know it saw everything.
    listing = retained_listing(settings, quiet=30, timeout=3)
    assert [m.topic for m in listing.messages] == ["a"]
    assert listing.incomplete == Incomplete.TIMEOUT


def test_broker_stopped_during_the_listing_is_incomplete(plain_broker: Any) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    many_retained(settings, 200)
    result: dict[str, Any] = {}

    def listing() -> None:
        # A long quiet window: the listing is still waiting for more when the
        # broker goes away.
        result["listing"] = retained_listing(settings, quiet=30, timeout=60)

    thread = threading.Thread(target=listing)
    thread.start()
    wait_until(lambda: "Sending SUBACK" in plain_broker.log, what="the SUBACK")
    plain_broker.stop()
    thread.join(20)
    assert not thread.is_alive()
    assert result["listing"].incomplete == Incomplete.CONNECTION_LOST
    assert not result["listing"].complete


def test_connection_cut_mid_stream_is_incomplete(
    plain_broker: Any, cutting_proxy: CuttingProxy
) -> None:
    many_retained(ConnectionSettings(host="127.0.0.1", port=plain_broker.port), 200)
    listing = retained_listing(
        ConnectionSettings(host="127.0.0.1", port=cutting_proxy.port)
    )
    assert cutting_proxy.cuts == 1
    assert 0 < len(listing.messages) < 200
    assert listing.incomplete == Incomplete.CONNECTION_LOST


def test_cleared_names_only_topics_that_held_a_message(plain_broker: Any) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    retain(settings, ("plant/a", b"1", 1), ("plant/b/c", b"2", 1), ("keep", b"3", 1))
    assert retained_clear(settings, "nothing/here") == []
    assert retained_clear(settings, "plant", recursive=True) == [
        "plant/a",
        "plant/b/c",
    ]
    assert [m.topic for m in retained_list(settings)] == ["keep"]
    assert retained_clear(settings, "keep") == ["keep"]
    assert retained_list(settings) == []


def test_empty_wildcard_listing_carries_the_replay_note(plain_broker: Any) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    assert "wildcard subscriptions (RabbitMQ)" in retained_listing(settings, "#").note
    assert retained_listing(settings, "exact/topic").note == ""
    retain(settings, ("a", b"1", 1))
    assert retained_listing(settings, "#").note == ""


# --- Page and API ---------------------------------------------------------------


def test_page_shows_qos_and_an_incomplete_list(
    world: dict, plain_broker: Any, cutting_proxy: CuttingProxy
) -> None:
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    retain(settings, ("q/2", b"c", 2))
    viewer = logged_in(world["users"]["viewer"])
    broker = make_broker(world["product"], name="direct", port=plain_broker.port)
    html = viewer.get(f"/brokers/{broker.pk}/retained/", **HTMX).content.decode()
    assert '<td class="num">2</td>' in html
    assert "This list is incomplete" not in html
    many_retained(settings, 200)
    cut = make_broker(world["product"], name="cut", port=cutting_proxy.port)
    html = viewer.get(f"/brokers/{cut.pk}/retained/", **HTMX).content.decode()
    assert "This list is incomplete" in html
    assert "the connection dropped while listing" in html


def test_page_notes_brokers_that_do_not_replay_to_wildcards(
    world: dict, plain_broker: Any
) -> None:
    broker = make_broker(world["product"], port=plain_broker.port)
    html = (
        logged_in(world["users"]["viewer"])
        .get(f"/brokers/{broker.pk}/retained/", **HTMX)
        .content.decode()
    )
    assert "0 retained messages under" in html
    assert "may not replay retained messages to wildcard subscriptions" in html


def test_api_reports_qos_completeness_and_note(
    world: dict, plain_broker: Any, cutting_proxy: CuttingProxy
) -> None:
    viewer = as_user(world["users"]["viewer"])
    broker = make_broker(world["product"], name="direct", port=plain_broker.port)
    url = f"/api/v1/brokers/{broker.pk}/retained/"
    empty = viewer.get(url).json()
    assert empty["results"] == [] and empty["complete"] is True
    assert "wildcard subscriptions (RabbitMQ)" in empty["note"]
    settings = ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    retain(settings, ("q/1", b"b", 1), ("q/2", b"c", 2))
    body = viewer.get(url).json()
    assert [(m["topic"], m["qos"]) for m in body["results"]] == [("q/1", 1), ("q/2", 2)]
    assert body["count"] == 2 and body["complete"] is True
    assert body["incomplete_reason"] == "" and body["note"] == ""
    many_retained(settings, 200)
    cut = make_broker(world["product"], name="cut", port=cutting_proxy.port)
    body = viewer.get(f"/api/v1/brokers/{cut.pk}/retained/").json()
    assert body["complete"] is False
    assert body["incomplete_reason"] == "connection_lost"


# --- RabbitMQ (only where its MQTT plugin is reachable) ---------------------------

RABBITMQ_MQTT = os.environ.get("MQTTADMIN_TEST_RABBITMQ_MQTT", "")


@pytest.mark.skipif(
    not RABBITMQ_MQTT,
    reason="set MQTTADMIN_TEST_RABBITMQ_MQTT=host:port to a RabbitMQ with the "
    "rabbitmq_mqtt plugin enabled (enabling it changes a system service)",
)
def test_rabbitmq_lists_exact_topics_and_notes_wildcards() -> None:
    host, port = RABBITMQ_MQTT.rsplit(":", 1)
    settings = ConnectionSettings(
        host=host,
        port=int(port),
        username=os.environ.get("MQTTADMIN_TEST_RABBITMQ_USER", "guest"),
        password=os.environ.get("MQTTADMIN_TEST_RABBITMQ_PASSWORD", "guest"),
    )
    topic = f"mqttadmin/test/{os.urandom(4).hex()}"
    retain(settings, (topic, b"1", 1))
    try:
        exact = retained_listing(settings, topic)
        assert [(m.topic, m.qos) for m in exact.messages] == [(topic, 1)]
        wildcard = retained_listing(settings, f"{topic}/#")
        if not wildcard.messages:
            assert "RabbitMQ" in wildcard.note
    finally:
        assert retained_clear(settings, topic) == [topic]


@pytest.mark.django_db
def test_a_filter_the_acl_refuses_is_an_error_not_an_empty_list(
    dynsec_broker: ManagedProcess,  # noqa: F811
) -> None:
    # Mosquitto's acl_file grants every SUBSCRIBE; Dynamic Security refuses it.
    dynsec_account(dynsec_broker, [("publishClientSend", "secret/#")])
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=dynsec_broker.port,
        username=PORTAL_USER,
        password=PORTAL_PASSWORD,
    )
    admin = ConnectionSettings.from_broker(dynsec_broker.broker)
    retain(settings, ("secret/x", b"1", 1))
    assert [m.topic for m in retained_list(admin, "secret/#")] == ["secret/x"]
    with pytest.raises(SubscriptionRefused, match="refused the subscription"):
        retained_listing(settings, "secret/#")
    # Written but not readable: the exact topic is still cleared.
    assert retained_clear(settings, "secret/x") == ["secret/x"]
    assert retained_list(admin, "secret/#") == []
    with pytest.raises(SubscriptionRefused):
        retained_clear(settings, "secret", recursive=True)
