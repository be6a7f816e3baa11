"""Connected clients from the broker's log ($SYS/broker/log/#): the parser on real
Mosquitto lines, the clients API against a real broker and runtime, refused-login
alerts, disabling a client's user on a Dynamic Security broker, permissions."""

from __future__ import annotations

import datetime
import glob
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from acl import services as acl_services
from alerts.models import Alert, AlertState
from brokers.choices import ControlAction
from brokers.models import Broker, BrokerStatus
from brokers.services import broker_control, broker_create, subscription_create
from history.models import StoredMessage, Topic
from mqttadmin.models import AuditEntry
from observe import client_log
from observe.client_log import parse_log_line
from observe.models import ClientEvent, ConnectedClient
from tests.clients import HTMX, as_user, logged_in
from tests.observe import sys_support
from tests.observe.sys_support import (
    LOG_CONFIG,
    PORTAL_PASSWORD,
    PORTAL_USER,
    USERS,
    hold,
    refused_connect,
    retrying,
    wait_until,
)
from tests.services import missing

# Fixtures of sys_support, used by this module's tests.
log_broker = sys_support.log_broker

# --- The parser, on lines a real Mosquitto 2.0.11 published ------------------------


def test_parses_a_connect_line_with_username() -> None:
    event = parse_log_line(
        "1795344906: New client connected from 127.0.0.1:56854 as c31 "
        "(p1, c1, k60, u'alice')."
    )
    assert event is not None
    assert event.kind == "connected"
    assert event.client_id == "c31"
    assert event.address == "127.0.0.1:56854"
    assert event.username == "alice"
    assert event.protocol == "3.1"
    assert event.clean_session is True
    assert event.keepalive == 60
    assert event.at == datetime.datetime.fromtimestamp(1795344906, tz=datetime.UTC)


@pytest.mark.parametrize(
    ("flag", "protocol"),
    [("p1", "3.1"), ("p2", "3.1.1"), ("p5", "5"), ("p3", "3.1"), ("p4", "3.1.1")],
)
def test_maps_the_protocol_of_mosquitto_2_0_and_2_1(flag: str, protocol: str) -> None:
    event = parse_log_line(
        f"1795344907: New client connected from 127.0.0.1:1 as x ({flag}, c0, k45)."
    )
    assert event is not None
    assert event.protocol == protocol
    assert event.clean_session is False
    assert event.keepalive == 45
    assert event.username == ""


@pytest.mark.parametrize(
    ("line", "kind", "client_id", "address", "reason"),
    [
        (
            "1795344907: Client c31 disconnected.",
            "disconnect",
            "c31",
            "",
            "disconnected",
        ),
        (
            "1795344909: Client raw1 closed its connection.",
            "disconnect",
            "raw1",
            "",
            "closed its connection",
        ),
        (
            "1795344909: Client cid has exceeded timeout, disconnecting.",
            "disconnect",
            "cid",
            "",
            "keepalive timeout",
        ),
        (
            "1795344909: Socket error on client cid, disconnecting.",
            "disconnect",
            "cid",
            "",
            "socket error",
        ),
        (
            "1795344889: Client <unknown> disconnected, not authorised.",
            "refused",
            "",
            "",
            "not authorised",
        ),
        (
            "1795344889: Client cid [127.0.0.1:5555] disconnected: not authorised.",
            "refused",
            "cid",
            "127.0.0.1:5555",
            "not authorised",
        ),
        (
            "Client cid [127.0.0.1:5555] disconnected: bad username or password.",
            "refused",
            "cid",
            "127.0.0.1:5555",
            "bad username or password",
        ),
        (
            "1795345248: Client dave-1 been disconnected by administrative action.",
            "disconnect",
            "dave-1",
            "",
            "disconnected by administrative action",
        ),
        (
            "1795344889: Client cid already connected, closing old connection.",
            "disconnect",
            "cid",
            "",
            "taken over by a new connection",
        ),
    ],
)
def test_parses_disconnects_and_refusals(
    line: str, kind: str, client_id: str, address: str, reason: str
) -> None:
    event = parse_log_line(line)
    assert event is not None
    assert (event.kind, event.client_id, event.address, event.reason) == (
        kind,
        client_id,
        address,
        reason,
    )


def test_other_log_lines_are_not_client_events() -> None:
    assert parse_log_line("1795344886: watcher 0 $SYS/#") is None
    assert parse_log_line("1795344886: mosquitto version 2.0.11 running") is None
    connecting = parse_log_line(
        "1795344906: New connection from 127.0.0.1:56854 on port 1883."
    )
    assert connecting is not None
    assert connecting.kind == "connecting"
    assert connecting.address == "127.0.0.1:56854"


# --- Against a real Mosquitto and the runtime ----------------------------------------


def clients_api(user: Any, broker: Broker) -> dict[str, Any]:
    response = retrying(as_user(user).get, f"/api/v1/brokers/{broker.pk}/clients/")
    assert response.status_code == 200, response.content
    return response.json()


def connected_ids(user: Any, broker: Broker) -> set[str]:
    return {row["client_id"] for row in clients_api(user, broker)["connected"]}


def make_log_broker(world: dict, port: int, **fields: Any) -> Broker:
    fields.setdefault("username", PORTAL_USER)
    fields.setdefault("password", PORTAL_PASSWORD)
    fields.setdefault("collect_sys_stats", True)
    broker = retrying(
        broker_create,
        actor=world["users"]["superuser"],
        product=world["product"],
        name=f"logged-{port}",
        host="127.0.0.1",
        port=port,
        **fields,
    )
    retrying(
        subscription_create,
        actor=world["users"]["superuser"],
        broker=broker,
        name="All",
        topic_filter="#",
        qos=0,
        store_messages=True,
    )
    return broker


def log_ready(viewer: Any, broker: Broker) -> bool:
    # The broker logs the runtime's own $SYS/# subscription: proof that the log
    # reaches the portal, and that the session's start is recorded.
    answer = clients_api(viewer, broker)
    return answer["log_available"] and answer["since"] is not None


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
def test_clients_api_lists_exactly_the_connected_clients_and_their_disconnects(
    log_broker: Any, world: dict, start_runtime: Any
) -> None:
    viewer = world["users"]["viewer"]
    start_runtime()
    broker = make_log_broker(world, log_broker.port)
    wait_until(lambda: log_ready(viewer, broker), what="the log to arrive")
    assert connected_ids(viewer, broker) == set()

    held = [
        hold(
            log_broker.port,
            "alice-1",
            "alice",
            USERS["alice"],
            protocol="5",
            keepalive=30,
        ),
        hold(log_broker.port, "bob-1", "bob", USERS["bob"], keepalive=45),
        hold(
            log_broker.port,
            "carol-1",
            "carol",
            USERS["carol"],
            protocol="3.1",
            keepalive=20,
        ),
    ]
    try:
        wait_until(
            lambda: connected_ids(viewer, broker) == {"alice-1", "bob-1", "carol-1"},
            what="the three clients listed",
        )
        rows = {
            row["client_id"]: row for row in clients_api(viewer, broker)["connected"]
        }
        assert {
            k: rows["alice-1"][k] for k in ("username", "protocol", "keepalive")
        } == {
            "username": "alice",
            "protocol": "5",
            "keepalive": 30,
        }
        assert (rows["bob-1"]["username"], rows["bob-1"]["protocol"]) == (
            "bob",
            "3.1.1",
        )
        assert rows["bob-1"]["keepalive"] == 45
        assert (rows["carol-1"]["protocol"], rows["carol-1"]["keepalive"]) == (
            "3.1",
            20,
        )
        assert all(row["clean_session"] is True for row in rows.values())
        assert all(row["address"].startswith("127.0.0.1:") for row in rows.values())
        assert all(row["connected_at"] for row in rows.values())

        held[1].close()
        wait_until(
            lambda: connected_ids(viewer, broker) == {"alice-1", "carol-1"},
            what="bob gone from the list",
        )
        gone = clients_api(viewer, broker)["recent_disconnects"][0]
        assert (gone["client_id"], gone["username"]) == ("bob-1", "bob")
        assert gone["reason"] == "disconnected"

        # $SYS traffic is statistics, not history, topics or counted messages.
        assert not StoredMessage.objects.filter(topic__startswith="$SYS").exists()
        assert not Topic.objects.filter(topic__startswith="$SYS").exists()
        assert BrokerStatus.objects.get(broker=broker).messages_received == 0

        # A new session cannot know who connected before it: the list starts over.
        before = clients_api(viewer, broker)["since"]
        retrying(
            broker_control,
            actor=world["users"]["superuser"],
            broker=broker,
            action=ControlAction.RECONNECT,
        )
        wait_until(
            lambda: clients_api(viewer, broker)["since"] not in (None, before),
            what="a new session",
        )
        assert connected_ids(viewer, broker) == set()
        assert "reconnect" in clients_api(viewer, broker)["hint"]
        late = hold(log_broker.port, "bob-2", "bob", USERS["bob"])
        held.append(late)
        wait_until(
            lambda: connected_ids(viewer, broker) == {"bob-2"},
            what="a client connected after the reconnect",
        )
    finally:
        for client in held:
            client.close()


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_refused_logins_opens_an_alert_resolved_when_quiet(
    log_broker: Any, world: dict, start_runtime: Any, settings: Any
) -> None:
    settings.BROKER_REFUSED_LOGIN_BURST = 5
    settings.BROKER_REFUSED_LOGIN_WINDOW_S = 4
    viewer = world["users"]["viewer"]
    start_runtime()
    broker = make_log_broker(world, log_broker.port)
    wait_until(lambda: log_ready(viewer, broker), what="the log to arrive")
    key = f"broker:{broker.pk}:refused-logins"

    assert refused_connect(log_broker.port, "alice", "wrong") != 0
    wait_until(lambda: clients_api(viewer, broker)["refused"], what="one refusal")
    refused = clients_api(viewer, broker)["refused"][0]
    assert refused["address"].startswith("127.0.0.1:")
    assert refused["reason"] == "not authorised"
    assert not Alert.objects.filter(rule_key=key).exists()

    for _attempt in range(4):
        assert refused_connect(log_broker.port, "alice", "wrong") != 0
    alert = wait_until(
        lambda: Alert.objects.filter(rule_key=key, state=AlertState.OPEN).first(),
        what="the alert",
    )
    assert alert.product_id == broker.product_id
    assert alert.subject == broker.name
    assert len(clients_api(viewer, broker)["refused"]) == 5
    # Mosquitto keeps publishing $SYS each second: the quiet window resolves it.
    wait_until(
        lambda: Alert.objects.get(pk=alert.pk).state == AlertState.RESOLVED,
        timeout=20,
        what="the alert resolved",
    )


def test_log_hint_names_the_settings_to_add(world: dict, db: Any) -> None:
    broker = broker_create(
        actor=None,
        product=world["product"],
        name="no-log",
        host="127.0.0.1",
        port=1,
        enabled=False,
        collect_sys_stats=True,
    )
    answer = clients_api(world["users"]["viewer"], broker)
    assert answer["connected"] == []
    assert answer["log_available"] is False
    assert answer["since"] is None
    assert "not connected" in answer["hint"]
    BrokerStatus.objects.filter(broker=broker).update(
        state="connected", last_connected_at=timezone.now()
    )
    hint = clients_api(world["users"]["viewer"], broker)["hint"]
    assert "log_dest topic" in hint
    assert "log_type all" in hint
    assert "$SYS/broker/log/#" in hint
    broker.collect_sys_stats = False
    broker.save()
    assert "collect $SYS" in clients_api(world["users"]["viewer"], broker)["hint"]


def test_events_are_bounded_per_broker(world: dict, db: Any) -> None:
    broker = broker_create(
        actor=None,
        product=world["product"],
        name="bounded",
        host="127.0.0.1",
        port=1,
        enabled=False,
    )
    now = timezone.now()
    lines = [
        (now, f"{int(now.timestamp())}: Client c{n} disconnected.")
        for n in range(client_log.KEEP_EVENTS + 20)
    ]
    assert client_log.record_log(broker.pk, lines)
    rows = ClientEvent.objects.filter(broker=broker, kind="disconnect")
    assert rows.count() == client_log.KEEP_EVENTS
    newest = rows.order_by("-id").first()
    assert newest is not None
    assert newest.client_id == f"c{client_log.KEEP_EVENTS + 19}"


# --- Permissions ------------------------------------------------------------------


@pytest.fixture
def listed(world: dict, db: Any) -> Broker:
    """A broker whose session is connected with one client listed."""
    broker = broker_create(
        actor=None,
        product=world["product"],
        name="listed",
        host="127.0.0.1",
        port=1,
        enabled=False,
        collect_sys_stats=True,
    )
    since = timezone.now() - datetime.timedelta(minutes=1)
    BrokerStatus.objects.filter(broker=broker).update(
        state="connected", last_connected_at=since
    )
    ConnectedClient.objects.create(
        broker=broker,
        client_id="dev-1",
        address="127.0.0.1:4000",
        username="dev",
        protocol="3.1.1",
        clean_session=True,
        keepalive=60,
        connected_at=timezone.now(),
        seen_at=timezone.now(),
    )
    return broker


@pytest.mark.parametrize("role", ["viewer", "operator", "admin", "superuser"])
def test_members_read_the_clients(world: dict, listed: Broker, role: str) -> None:
    answer = clients_api(world["users"][role], listed)
    assert [row["client_id"] for row in answer["connected"]] == ["dev-1"]
    assert set(answer) >= {
        "connected",
        "recent_disconnects",
        "refused",
        "log_available",
        "hint",
    }


def test_other_products_do_not_see_the_clients(world: dict, listed: Broker) -> None:
    client = as_user(world["users"]["outsider"])
    assert client.get(f"/api/v1/brokers/{listed.pk}/clients/").status_code == 404
    assert client.get(f"/api/v1/brokers/{listed.pk}/stats/").status_code == 404
    response = client.post(
        f"/api/v1/brokers/{listed.pk}/clients/disable/",
        {"client_id": "dev-1"},
        format="json",
    )
    assert response.status_code == 404


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_disabling_a_client_needs_the_admin_role(
    world: dict, listed: Broker, role: str
) -> None:
    response = as_user(world["users"][role]).post(
        f"/api/v1/brokers/{listed.pk}/clients/disable/",
        {"client_id": "dev-1"},
        format="json",
    )
    assert response.status_code == 403


def test_disabling_needs_a_client_id_and_dynsec(world: dict, listed: Broker) -> None:
    admin = as_user(world["users"]["admin"])
    url = f"/api/v1/brokers/{listed.pk}/clients/disable/"
    response = admin.post(url, {}, format="json")
    assert response.status_code == 400
    assert "client_id" in response.json()
    response = admin.post(url, {"client_id": "dev-1"}, format="json")
    assert response.status_code == 400
    assert "Dynamic Security" in str(response.json()["client_id"])
    assert not AuditEntry.objects.filter(action="mqtt_user.update").exists()


# --- Disabling a client's user on a Dynamic Security broker ---------------------------

ADMIN_USER, ADMIN_PASSWORD = "admin", "dynsec-Admin-55"


@pytest.fixture
def dynsec_log_broker(mosquitto: Any, tmp_path: Path) -> Any:
    plugins = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so"))
    ctrl = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
    if not plugins or not Path(ctrl).exists():
        missing("the Dynamic Security plugin or mosquitto_ctrl is missing")
    config = tmp_path / "dynsec.json"
    subprocess.run(
        [ctrl, "dynsec", "init", str(config), ADMIN_USER, ADMIN_PASSWORD],
        check=True,
        capture_output=True,
        timeout=10,
    )
    config.chmod(0o600)
    return mosquitto(
        "listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"plugin {plugins[0]}\nplugin_opt_config_file {config}\n{LOG_CONFIG}",
        name="dynseclog",
    )


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
def test_an_admin_disables_a_connected_clients_user_and_it_is_kicked(
    dynsec_log_broker: Any, world: dict, start_runtime: Any
) -> None:
    admin, viewer = world["users"]["admin"], world["users"]["viewer"]
    start_runtime()
    broker = retrying(
        broker_create,
        actor=world["users"]["superuser"],
        product=world["product"],
        name="dynsec-clients",
        host="127.0.0.1",
        port=dynsec_log_broker.port,
        username=ADMIN_USER,
        password=ADMIN_PASSWORD,
    )
    # Managed, so $SYS is collected without the broker's own switch.
    retrying(
        acl_services.management_update,
        actor=world["users"]["superuser"],
        broker=broker,
        management="dynsec",
    )
    user, result = retrying(
        acl_services.mqtt_user_create,
        actor=admin,
        broker=broker,
        username="dave",
        password="dave-Pa55",
    )
    assert result.applied, result.error
    wait_until(lambda: log_ready(viewer, broker), what="the log to arrive")
    dave = hold(dynsec_log_broker.port, "dave-1", "dave", "dave-Pa55")
    try:
        wait_until(
            lambda: "dave-1" in connected_ids(viewer, broker), what="dave listed"
        )
        response = retrying(
            as_user(admin).post,
            f"/api/v1/brokers/{broker.pk}/clients/disable/",
            {"client_id": "dave-1"},
            format="json",
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["username"], body["enabled"]) == ("dave", False)
        assert body["sync"]["state"] == "applied"
        assert dave.closed.wait(5), "the disabled client was not kicked"
        wait_until(
            lambda: "dave-1" not in connected_ids(viewer, broker), what="dave gone"
        )
        # The portal's own Dynamic Security sessions come and go here too.
        kicked = next(
            event
            for event in clients_api(viewer, broker)["recent_disconnects"]
            if event["client_id"] == "dave-1"
        )
        assert kicked["username"] == "dave"
        assert kicked["reason"] == "disconnected by administrative action"
        user.refresh_from_db()
        assert user.enabled is False
        entry = AuditEntry.objects.filter(action="mqtt_user.update").latest("id")
        assert entry.actor_id == admin.pk
    finally:
        dave.close()


# --- The Clients tab ----------------------------------------------------------------


def test_the_clients_tab_lists_the_clients(world: dict, listed: Broker) -> None:
    page = logged_in(world["users"]["viewer"], world["product"])
    response = page.get(f"/brokers/{listed.pk}/?tab=clients")
    assert response.status_code == 200
    body = response.content.decode()
    assert "dev-1" in body
    assert f'hx-get="/brokers/{listed.pk}/clients/"' in body
    # No dynsec management and no admin: no disable button.
    assert "Disable user" not in body


def test_the_clients_table_is_a_partial_for_htmx(world: dict, listed: Broker) -> None:
    page = logged_in(world["users"]["viewer"], world["product"])
    response = page.get(f"/brokers/{listed.pk}/clients/", **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith(f'<div id="clients-table-{listed.pk}"')
    assert "dev-1" in body
    assert "<html" not in body
    plain = page.get(f"/brokers/{listed.pk}/clients/")
    assert plain.status_code == 302
    assert plain["Location"].endswith("?tab=clients")


def test_the_clients_tab_says_what_to_configure(world: dict, listed: Broker) -> None:
    page = logged_in(world["users"]["viewer"], world["product"])
    body = page.get(f"/brokers/{listed.pk}/?tab=clients").content.decode()
    assert "log_dest topic" in body
    assert "$SYS/broker/log/#" in body


def test_pages_of_other_products_are_404(world: dict, listed: Broker) -> None:
    page = logged_in(world["users"]["outsider"])
    assert page.get(f"/brokers/{listed.pk}/?tab=clients").status_code == 404
    assert page.get(f"/brokers/{listed.pk}/clients/").status_code == 404
    response = page.post(
        f"/brokers/{listed.pk}/clients/disable/", {"client_id": "dev-1"}
    )
    assert response.status_code == 404


def test_the_page_disable_needs_the_admin_role(world: dict, listed: Broker) -> None:
    page = logged_in(world["users"]["operator"], world["product"])
    response = page.post(
        f"/brokers/{listed.pk}/clients/disable/", {"client_id": "dev-1"}
    )
    assert response.status_code == 403


def test_the_page_disable_explains_a_refusal(world: dict, listed: Broker) -> None:
    page = logged_in(world["users"]["admin"], world["product"])
    response = page.post(
        f"/brokers/{listed.pk}/clients/disable/",
        {"client_id": "dev-1"},
        **HTMX,
    )
    assert response.status_code == 200
    assert "Dynamic Security" in response.content.decode()
    assert not AuditEntry.objects.filter(action="mqtt_user.update").exists()
