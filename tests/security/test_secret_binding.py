"""A stored broker password or client key goes only where it was saved for.

The attack: an operator, who never gets to read the stored password, points a
connection test (or the saved broker itself) at a host of their own and leaves
the password out, so the portal sends the stored one there. "Their own host" is a
TCP listener of the test's own on loopback that records every byte it receives:
an MQTT CONNECT carries the password in clear. Every interface is tried as an
operator (the Django admin as a staff product admin, the least it lets in).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from brokers import services
from brokers.forms import BrokerForm
from brokers.models import Broker, ProductMqttConfig
from tests.brokers.conftest import tls_material  # noqa: F401 (a fixture)
from tests.clients import HTMX, as_user, logged_in
from tests.factories import make_broker

pytestmark = pytest.mark.django_db

SECRET = "st0red-Broker-Pa55"
NEW_SECRET = "typed-Again-Pa55"
REFUSED = "Enter the password again"
# MQTT 3.1.1 CONNACK "not authorised": the portal's client gives up at once.
CONNACK_REFUSED = b"\x20\x02\x00\x05"


class Recorder:
    """A TCP listener that records what it receives and answers a CONNECT with a
    refusing CONNACK (so a connection test ends without waiting)."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self._data = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                try:
                    while chunk := conn.recv(65536):
                        with self._lock:
                            self._data += chunk
                        if chunk[:1] == b"\x10":  # CONNECT
                            conn.sendall(CONNACK_REFUSED)
                except OSError:
                    pass

    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=2)


@pytest.fixture
def saved() -> Any:
    """Where the broker was saved to point: the legitimate broker."""
    recorder = Recorder()
    yield recorder
    recorder.close()


@pytest.fixture
def attacker() -> Any:
    """A listener the operator controls."""
    recorder = Recorder()
    yield recorder
    recorder.close()


def saved_broker(world: dict, port: int, **fields: Any) -> Broker:
    """The connection under test, saved with a password (unless told otherwise)."""
    fields.setdefault("username", "sensor")
    fields.setdefault("password", SECRET)
    # The recording server answers in MQTT 3.1.1.
    fields.setdefault("protocol", "3.1.1")
    # Disabled: no runtime connects during these tests.
    return make_broker(
        world["product"],
        name="Line",
        port=port,
        enabled=False,
        connect_timeout=2.0,
        **fields,
    )


def stored(broker: Broker) -> tuple[Any, ...]:
    broker = Broker.objects.get(pk=broker.pk)
    return (
        broker.host,
        broker.port,
        broker.fallback_hosts,
        broker.use_tls,
        broker.password,
        broker.client_key,
    )


def operator_api(world: dict) -> Any:
    return as_user(world["users"]["operator"])


def form_data(broker: Broker, **changes: Any) -> dict[str, Any]:
    """What the edit page posts for `broker` untouched (secrets empty), changed."""
    form = BrokerForm(instance=broker, product=broker.product)
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if name == "fallback_hosts":
            value = "\n".join(broker.fallback_hosts)
        if value is True:
            data[name] = "on"
        elif value is not None and value is not False:
            data[name] = value
    for secret in Broker.SECRET_FIELDS:
        data.pop(secret, None)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


# --- The recorder does see a password sent to it ---------------------------------


def test_a_test_of_the_saved_settings_sends_the_password_where_it_was_saved(
    world: dict, saved: Recorder
) -> None:
    broker = saved_broker(world, saved.port)
    response = operator_api(world).post(
        f"/api/v1/brokers/{broker.pk}/test/", {}, format="json"
    )
    assert response.status_code == 200
    assert SECRET.encode() in saved.received


# --- Connection tests ---------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"port": "ATTACKER"},
        {"port": "ATTACKER", "password": "***"},
        {"port": "ATTACKER", "password": None},
        {"host": "localhost", "port": "ATTACKER"},
        {"host": "127.0.0.1.", "port": "ATTACKER"},
    ],
)
def test_api_test_elsewhere_does_not_send_the_stored_password(
    world: dict, saved: Recorder, attacker: Recorder, changes: dict
) -> None:
    broker = saved_broker(world, saved.port)
    body = {k: attacker.port if v == "ATTACKER" else v for k, v in changes.items()}
    response = operator_api(world).post(
        f"/api/v1/brokers/{broker.pk}/test/", body, format="json"
    )
    assert response.status_code == 400
    assert REFUSED in " ".join(response.json()["password"])
    assert SECRET.encode() not in attacker.received
    assert attacker.received == b""


def test_api_test_with_tls_turned_off_does_not_send_the_password_in_clear(
    world: dict, saved: Recorder
) -> None:
    broker = saved_broker(world, saved.port, use_tls=True)
    response = operator_api(world).post(
        f"/api/v1/brokers/{broker.pk}/test/", {"use_tls": False}, format="json"
    )
    assert response.status_code == 400
    assert "TLS is turned off" in " ".join(response.json()["password"])
    assert SECRET.encode() not in saved.received


def test_api_test_elsewhere_with_the_password_typed_again_sends_only_that(
    world: dict, saved: Recorder, attacker: Recorder
) -> None:
    broker = saved_broker(world, saved.port)
    response = operator_api(world).post(
        f"/api/v1/brokers/{broker.pk}/test/",
        {"port": attacker.port, "password": NEW_SECRET},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["error"] == "not_authorized"
    assert NEW_SECRET.encode() in attacker.received
    assert SECRET.encode() not in attacker.received


def test_api_test_elsewhere_does_not_use_the_stored_client_key(
    world: dict,
    saved: Recorder,
    attacker: Recorder,
    tls_material: Any,  # noqa: F811
) -> None:
    broker = saved_broker(
        world,
        saved.port,
        password="",
        username="",
        use_tls=True,
        client_cert=tls_material.server_cert.read_text(),
        client_key=tls_material.server_key.read_text(),
    )
    response = operator_api(world).post(
        f"/api/v1/brokers/{broker.pk}/test/", {"port": attacker.port}, format="json"
    )
    assert response.status_code == 400
    assert "Enter the client key again" in " ".join(response.json()["client_key"])
    assert attacker.received == b""


def test_page_test_button_elsewhere_does_not_send_the_stored_password(
    world: dict, saved: Recorder, attacker: Recorder
) -> None:
    broker = saved_broker(world, saved.port)
    page = logged_in(world["users"]["operator"])
    response = page.post(
        f"/brokers/{broker.pk}/test/",
        form_data(broker, port=str(attacker.port)),
        **HTMX,
    )
    html = response.content.decode()
    assert REFUSED in html
    assert "Connection works" not in html
    assert attacker.received == b""
    # Without JavaScript: the form page comes back with the error.
    response = page.post(
        f"/brokers/{broker.pk}/test/", form_data(broker, port=str(attacker.port))
    )
    assert REFUSED in response.content.decode()
    assert attacker.received == b""


def test_product_mqtt_config_test_elsewhere_does_not_send_the_stored_password(
    world: dict, saved: Recorder, attacker: Recorder
) -> None:
    broker = saved_broker(world, saved.port)
    ProductMqttConfig.objects.create(product=world["product"], primary_broker=broker)
    url = f"/api/v1/products/{world['product'].pk}/mqtt-config/test/"
    for body in (
        {"broker": {"port": attacker.port}},
        {"port": attacker.port, "password": "***"},
        {"host": "localhost", "port": attacker.port, "password": None},
    ):
        response = operator_api(world).post(url, body, format="json")
        assert response.status_code == 400, response.content
        assert REFUSED in " ".join(response.json()["broker.password"])
    assert attacker.received == b""


# --- Changes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"port": "ATTACKER"},
        {"host": "localhost", "port": "ATTACKER"},
        {"fallback_hosts": ["127.0.0.1:ATTACKER"]},
        {"port": "ATTACKER", "password": "***"},
    ],
)
def test_api_patch_elsewhere_is_refused_and_changes_nothing(
    world: dict, saved: Recorder, attacker: Recorder, changes: dict
) -> None:
    broker = saved_broker(world, saved.port)
    before = stored(broker)
    body = {
        k: (
            [f"127.0.0.1:{attacker.port}"]
            if k == "fallback_hosts"
            else attacker.port
            if v == "ATTACKER"
            else v
        )
        for k, v in changes.items()
    }
    response = operator_api(world).patch(
        f"/api/v1/brokers/{broker.pk}/", body, format="json"
    )
    assert response.status_code == 400
    assert REFUSED in " ".join(response.json()["password"])
    assert stored(broker) == before
    assert attacker.received == b""


def test_api_put_elsewhere_is_refused_and_turning_tls_off_too(
    world: dict, saved: Recorder, attacker: Recorder
) -> None:
    broker = saved_broker(world, saved.port, use_tls=True)
    before = stored(broker)
    api = operator_api(world)
    url = f"/api/v1/brokers/{broker.pk}/"
    current = api.get(url).json()
    for changes in ({"port": attacker.port}, {"use_tls": False}):
        response = api.put(url, {**current, **changes}, format="json")
        assert response.status_code == 400, response.content
        assert "password" in response.json()
    assert stored(broker) == before


def test_api_change_elsewhere_with_the_password_typed_again_is_saved(
    world: dict, saved: Recorder, attacker: Recorder
) -> None:
    broker = saved_broker(world, saved.port)
    response = operator_api(world).patch(
        f"/api/v1/brokers/{broker.pk}/",
        {"port": attacker.port, "password": NEW_SECRET},
        format="json",
    )
    assert response.status_code == 200
    assert stored(broker)[1] == attacker.port and stored(broker)[4] == NEW_SECRET
    # A change that keeps the destination keeps the stored password too.
    response = operator_api(world).patch(
        f"/api/v1/brokers/{broker.pk}/", {"keepalive": 30}, format="json"
    )
    assert response.status_code == 200 and stored(broker)[4] == NEW_SECRET


def test_page_edit_elsewhere_is_refused_and_changes_nothing(
    world: dict, saved: Recorder, attacker: Recorder
) -> None:
    broker = saved_broker(world, saved.port)
    before = stored(broker)
    page = logged_in(world["users"]["operator"])
    for changes in (
        {"port": str(attacker.port)},
        {"fallback_hosts": f"127.0.0.1:{attacker.port}"},
    ):
        response = page.post(
            f"/brokers/{broker.pk}/edit/", form_data(broker, **changes)
        )
        assert response.status_code == 200
        assert REFUSED in response.content.decode()
    assert stored(broker) == before


def test_django_admin_change_elsewhere_is_refused_and_changes_nothing(
    world: dict, saved: Recorder, attacker: Recorder
) -> None:
    from tests.brokers.test_admin import _change_form_data

    broker = saved_broker(world, saved.port)
    before = stored(broker)
    staff = world["users"]["admin"]
    staff.is_staff = True
    staff.save()
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label="brokers")
    )
    client = Client()
    client.force_login(staff)
    url = f"/admin/brokers/broker/{broker.pk}/change/"
    data = _change_form_data(client, broker)
    data["port"] = str(attacker.port)
    response = client.post(url, data)
    assert response.status_code == 200, response.status_code
    assert REFUSED in response.content.decode()
    assert stored(broker) == before
    # Typing the password again is what it takes.
    data["password"] = NEW_SECRET
    response = client.post(url, data)
    assert response.status_code == 302
    assert stored(broker)[1] == attacker.port and stored(broker)[4] == NEW_SECRET


def test_product_mqtt_config_put_elsewhere_is_refused_and_changes_nothing(
    world: dict, saved: Recorder, attacker: Recorder
) -> None:
    broker = saved_broker(world, saved.port)
    ProductMqttConfig.objects.create(product=world["product"], primary_broker=broker)
    before = stored(broker)
    url = f"/api/v1/products/{world['product'].pk}/mqtt-config/"
    for broker_settings in (
        {"port": attacker.port},
        {"port": attacker.port, "password": "***"},
        {"use_tls": True, "verify_cert": True, "host": "localhost"},
    ):
        response = operator_api(world).put(
            url, {"broker": broker_settings}, format="json"
        )
        assert response.status_code == 400, response.content
        assert "broker.password" in response.json()
    assert stored(broker) == before
    assert attacker.received == b""


ADMIN_SECRET = "dynsec-Admin-Pa55"


def test_admin_password_does_not_follow_an_operators_new_host(
    world: dict, saved: Any, attacker: Any
) -> None:
    """The Dynamic Security admin password lives on the managed broker, not the
    connection: an operator who moves the connection (typing a connection password
    of their own) must not get the admin password sent to the new host by the next
    sync an admin runs."""
    from acl import services as acl_services
    from acl.choices import Management

    broker = saved_broker(world, saved.port)
    acl_services.management_update(
        actor=None,
        broker=broker,
        management=Management.DYNSEC,
        management_username="portal-admin",
        management_password=ADMIN_SECRET,
    )
    response = as_user(world["users"]["operator"]).patch(
        f"/api/v1/brokers/{broker.pk}/",
        {"port": attacker.port, "password": NEW_SECRET},
        format="json",
    )
    assert response.status_code == 200, response.content

    report = acl_services.acl_sync(
        actor=world["users"]["admin"], broker=Broker.objects.get(pk=broker.pk)
    )

    assert report.sync.state == "failed"
    assert "enter the admin password again" in report.sync.error
    assert ADMIN_SECRET.encode() not in attacker.received


def test_admin_password_entered_again_is_bound_to_the_new_host(
    world: dict, saved: Any, attacker: Any
) -> None:
    from acl import services as acl_services
    from acl.choices import Management
    from acl.models import ManagedBroker

    broker = saved_broker(world, saved.port)
    acl_services.management_update(
        actor=None,
        broker=broker,
        management=Management.DYNSEC,
        management_username="portal-admin",
        management_password=ADMIN_SECRET,
    )
    broker = services.broker_update(
        actor=None, broker=broker, port=attacker.port, password=NEW_SECRET
    )
    assert ManagedBroker.objects.get(pk=broker.pk).management_password_moved()

    acl_services.management_update(
        actor=world["users"]["admin"],
        broker=broker,
        management_password=ADMIN_SECRET,
    )

    managed = ManagedBroker.objects.get(pk=broker.pk)
    assert managed.management_password_moved() is None
    assert managed.management_bound_to["port"] == attacker.port
