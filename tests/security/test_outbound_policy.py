"""Webhooks do not reach the portal's own network (the outbound policy).

The attack: an operator makes the portal call internal services (cloud metadata,
Redis on loopback, private hosts) through a subscription webhook or an alert
rule's notify_webhook, and reads what answered from `last_error`. Here the
"internal service" is a real HTTP server of the test's on loopback; the suite
allows loopback (tests/conftest.py), and these tests set the policy back to its
default (nothing allowed) to prove it blocks.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from actions.models import ActionRun
from actions.runner import run_action_batch
from actions.webhooks import webhook_call
from alerts import services as alert_services
from alerts.models import Alert
from brokers import services as broker_services
from brokers.action_kinds import ActionError
from brokers.models import Broker, Subscription
from devices import services as device_services
from devices.models import AlertRule
from mqttadmin.lib import outbound
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.clients import HTMX, as_user, logged_in
from tests.http_sink import HttpSink

pytestmark = pytest.mark.django_db

BLOCKED = "blocked by the outbound policy"
# What each internal address must not turn into: the sink's answer.
SINK_ANSWER = "teapot-418-internal-service"


@pytest.fixture
def strict(settings: Any) -> None:
    """The policy as an installation gets it: nothing opened."""
    settings.MQTTADMIN_OUTBOUND_ALLOW = []


@pytest.fixture
def broker(world: dict) -> Broker:
    # Disabled: no runtime connects anywhere during these tests.
    return broker_services.broker_create(
        actor=None,
        product=world["product"],
        name="line",
        host="127.0.0.1",
        port=1,
        enabled=False,
    )


def deliver(subscription: Subscription) -> list[int]:
    """Ingest one message as the runtime would; returns the new action run ids."""
    before = set(ActionRun.objects.values_list("id", flat=True))
    store_batch(
        [
            ReceivedMessage(
                subscription.broker_id, "plant/x", b"1", 1, False, timezone.now()
            )
        ]
    )
    return sorted(set(ActionRun.objects.values_list("id", flat=True)) - before)


def webhook(url: str) -> list[dict[str, Any]]:
    return [{"type": "webhook", "url": url, "timeout_s": 2}]


# --- At connect time ------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "0x7f.1"])
def test_a_webhook_saved_while_allowed_is_blocked_when_it_runs(
    world: dict, broker: Broker, http_sink: HttpSink, settings: Any, host: str
) -> None:
    """Saved while the address was open (or under a name that only resolves to
    loopback when called): the run is refused where it connects, nothing reaches
    the sink, and last_error says only that the policy blocked it."""
    http_sink.statuses[:] = [418]
    port = http_sink.server.server_address[1]
    settings.MQTTADMIN_OUTBOUND_ALLOW = ["127.0.0.1", "localhost", "2130706433"]
    subscription = broker_services.subscription_create(
        actor=world["users"]["operator"],
        broker=broker,
        name="hook",
        topic_filter="plant/#",
        actions=webhook(f"http://{host}:{port}/metadata"),
    )
    settings.MQTTADMIN_OUTBOUND_ALLOW = []

    runs = deliver(subscription)
    assert run_action_batch(runs) == {"executed": 0, "failed": 1}

    assert http_sink.requests == []
    subscription.refresh_from_db()
    assert BLOCKED in subscription.last_error
    assert "418" not in subscription.last_error
    assert "attempts" not in subscription.last_error  # refused at once, no retries


def test_the_same_error_whether_or_not_something_listens(strict: None) -> None:
    """No port oracle: a blocked open port and a blocked closed port read alike."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    server = _answering_server()
    try:
        open_port = server.server_address[1]
        errors = []
        for port in (open_port, closed_port):
            with pytest.raises(ActionError) as caught:
                webhook_call({"url": f"http://127.0.0.1:{port}/"}, "{}", "k")
            errors.append(str(caught.value).replace(str(port), "PORT"))
        assert errors[0] == errors[1] and BLOCKED in errors[0]
        assert server.hits == 0
    finally:
        server.shutdown()
        server.server_close()


def test_alert_rule_notifications_are_blocked_when_sent(
    world: dict, http_sink: HttpSink, settings: Any
) -> None:
    settings.MQTTADMIN_OUTBOUND_ALLOW = ["127.0.0.1"]
    rule = device_services.alert_rule_create(
        actor=world["users"]["operator"],
        product=world["product"],
        key="temperature",
        op=">",
        threshold=1.0,
        notify_webhook=f"{http_sink.url}/hook",
    )
    settings.MQTTADMIN_OUTBOUND_ALLOW = []
    alert = Alert.objects.create(
        product=world["product"],
        rule_key=rule.rule_key,
        severity="warning",
        message="hot",
        subject="d1",
    )
    outcome = alert_services.alert_notify(alert_id=alert.pk, event="opened")
    assert BLOCKED in outcome["webhook"]
    assert http_sink.requests == []


def test_dns_answers_are_checked_and_the_checked_address_is_the_one_dialled(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebinding resolver: the first answer is an allowed address, later ones
    an internal service. One lookup per connection, and the connection goes to
    the address that passed the check."""
    internal = _answering_server(host="127.0.0.2")
    port = internal.server_address[1]
    settings.MQTTADMIN_OUTBOUND_ALLOW = ["127.0.0.1"]
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.2"])

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.rebind.test":
            host = next(answers)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        client = outbound.http_client()
        # 127.0.0.1 passed the check; nothing listens there on this port.
        with pytest.raises(Exception) as caught:
            client.get(f"http://hooks.rebind.test:{port}/", timeout=2)
        assert outbound.blocked_cause(caught.value) is None
        assert internal.hits == 0
        # The next connection resolves anew, gets 127.0.0.2 and is refused.
        with pytest.raises(Exception) as caught:
            client.get(f"http://hooks.rebind.test:{port}/", timeout=2)
        assert outbound.blocked_cause(caught.value) is not None
        assert internal.hits == 0
    finally:
        internal.shutdown()
        internal.server_close()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
    ],
)
def test_internal_addresses_are_refused_by_default(strict: None, address: str) -> None:
    with pytest.raises(outbound.OutboundBlocked):
        outbound.resolve_checked(address, 80)


def test_public_addresses_pass_and_the_allow_list_opens_ranges_and_names(
    settings: Any,
) -> None:
    import ipaddress

    settings.MQTTADMIN_OUTBOUND_ALLOW = []
    assert outbound.allowed("x", ipaddress.ip_address("93.184.216.34"))
    assert outbound.allowed("x", ipaddress.ip_address("2606:4700::1111"))
    assert not outbound.allowed("x", ipaddress.ip_address("10.9.8.7"))
    settings.MQTTADMIN_OUTBOUND_ALLOW = ["10.0.0.0/8", "hooks.internal", "*.corp.test"]
    assert outbound.allowed("x", ipaddress.ip_address("10.9.8.7"))
    assert outbound.allowed("x", ipaddress.ip_address("::ffff:10.9.8.7"))
    assert outbound.allowed("hooks.internal", ipaddress.ip_address("192.168.1.1"))
    assert outbound.allowed("a.corp.test", ipaddress.ip_address("192.168.1.1"))
    assert not outbound.allowed("hooks.other", ipaddress.ip_address("192.168.1.1"))


def test_redirects_are_not_followed(settings: Any, http_sink: HttpSink) -> None:
    """An allowed host answering 302 to an internal one gets no second request."""
    internal = _answering_server(host="127.0.0.2")
    settings.MQTTADMIN_OUTBOUND_ALLOW = ["127.0.0.1"]
    try:
        redirect = _redirecting_server(
            f"http://127.0.0.2:{internal.server_address[1]}/"
        )
        try:
            status = webhook_call(
                {"url": f"http://127.0.0.1:{redirect.server_address[1]}/"}, "{}", "k"
            )
        finally:
            redirect.shutdown()
            redirect.server_close()
        assert status == 302
        assert internal.hits == 0
    finally:
        internal.shutdown()
        internal.server_close()


def test_tls_checks_the_url_host_name_not_the_dialled_address(
    settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The socket goes to the checked address, while SNI and the certificate
    check use the URL's name: a certificate for hooks.test only is accepted."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from tests.brokers.conftest import _ca, _key, _name, _pem

    ca_cert, ca_key = _ca("Outbound Test CA")
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("hooks.test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_text(_pem(cert))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = _answering_server()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: names.append(name)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(
            "127.0.0.1" if host == "hooks.test" else host, *args, **kwargs
        )

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    settings.MQTTADMIN_OUTBOUND_ALLOW = ["hooks.test"]
    client_context = ssl.create_default_context(cadata=_pem(ca_cert))
    try:
        port = server.server_address[1]
        client = outbound.http_client(ssl_context=client_context)
        response = client.get(f"https://hooks.test:{port}/", timeout=5)
        assert response.status_code == 418
        assert names == ["hooks.test"]
        # The same server reached by address fails the name check: the URL's
        # host is what TLS verifies.
        settings.MQTTADMIN_OUTBOUND_ALLOW = ["hooks.test", "127.0.0.1"]
        with pytest.raises(Exception, match=r"certificate|hostname|match"):
            client.get(f"https://127.0.0.1:{port}/", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


# --- At save time ---------------------------------------------------------------

INTERNAL_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:6379/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost:6379/",
    "http://100.64.0.1/",
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_subscription_webhooks_to_internal_addresses_are_refused_on_save(
    world: dict, broker: Broker, strict: None, url: str
) -> None:
    client = as_user(world["users"]["operator"])
    response = client.post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "hook",
            "topic_filter": "plant/#",
            "actions": webhook(url),
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    errors = str(response.json()["actions"])
    assert "actions[0].url" in errors and BLOCKED in errors
    assert not Subscription.objects.filter(broker=broker).exists()


def test_subscription_page_refuses_an_internal_webhook(
    world: dict, broker: Broker, strict: None
) -> None:
    from tests.brokers.test_pages import error_next_to
    from tests.brokers.test_pages_subscriptions import (
        action_data,
        management,
        subscription_data,
    )

    data = {
        **subscription_data(**management(1)),
        **action_data(0, "webhook", url="http://169.254.169.254/latest/"),
    }
    response = logged_in(world["users"]["operator"]).post(
        f"/brokers/{broker.pk}/subscriptions/new/", data, **HTMX
    )
    assert BLOCKED in error_next_to(response.content.decode(), "actions-0-url")
    assert not Subscription.objects.filter(broker=broker).exists()


def test_alert_rule_page_refuses_an_internal_webhook(
    world: dict, broker: Broker, strict: None
) -> None:
    from tests.factories import make_device

    device = make_device(world["product"], broker, "d1")
    response = logged_in(world["users"]["operator"]).post(
        f"/devices/{device.pk}/rules/",
        {
            "key": "temperature",
            "op": ">",
            "threshold": "80",
            "severity": "warning",
            "notify_webhook": "http://[::ffff:169.254.169.254]/",
        },
        **HTMX,
    )
    assert BLOCKED in response.content.decode()
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:6379/",
        "http://[fd00:ec2::254]/",
        "http://127.0.0.1:6379/",
    ],
)
def test_alert_rule_webhooks_to_internal_addresses_are_refused_on_save(
    world: dict, strict: None, url: str
) -> None:
    client = as_user(world["users"]["operator"])
    response = client.post(
        "/api/v1/alert-rules/",
        {
            "product": world["product"].pk,
            "key": "temperature",
            "op": ">",
            "threshold": 80,
            "notify_webhook": url,
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "notify_webhook" in response.json()
    assert not AlertRule.objects.exists()


def test_an_internal_address_in_the_allow_list_can_be_saved(
    world: dict, broker: Broker, settings: Any
) -> None:
    settings.MQTTADMIN_OUTBOUND_ALLOW = ["169.254.169.254"]
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "hook",
            "topic_filter": "plant/#",
            "actions": webhook("http://169.254.169.254/"),
        },
        format="json",
    )
    assert response.status_code == 201, response.content


# --- Broker connection tests: exempt, but operators only and rate-limited -------


def test_viewers_cannot_run_connection_tests(world: dict, broker: Broker) -> None:
    viewer = world["users"]["viewer"]
    api = as_user(viewer)
    assert api.post(f"/api/v1/brokers/{broker.pk}/test/", {}).status_code == 403
    assert (
        api.post(
            f"/api/v1/products/{world['product'].pk}/mqtt-config/test/",
            {"host": "127.0.0.1", "port": 1},
            format="json",
        ).status_code
        == 403
    )
    page = logged_in(viewer)
    assert page.post(f"/brokers/{broker.pk}/test/", {}).status_code == 403


def test_connection_tests_are_rate_limited_per_user_across_api_and_page(
    world: dict, broker: Broker, settings: Any
) -> None:
    settings.MQTTADMIN_BROKER_TEST_RATE = "3/minute"
    operator = world["users"]["operator"]
    api = as_user(operator)
    page = logged_in(operator)
    url = f"/api/v1/brokers/{broker.pk}/test/"
    body = {"connect_timeout": 0.5}
    assert api.post(url, body, format="json").status_code == 200
    assert api.post(url, body, format="json").status_code == 200
    assert (
        api.post(
            f"/api/v1/products/{world['product'].pk}/mqtt-config/test/",
            {"host": "127.0.0.1", "port": 1},
            format="json",
        ).status_code
        == 200
    )
    assert api.post(url, body, format="json").status_code == 429
    response = page.post(
        f"/brokers/{broker.pk}/test/",
        {"host": "127.0.0.1", "port": "1"},
        **HTMX,
    )
    # htmx swaps only 2xx answers in: the fragment carries the refusal.
    assert response.status_code == 200
    assert "Too many connection tests" in response.content.decode()
    assert "Connection refused" not in response.content.decode()
    response = page.post(
        f"/brokers/{broker.pk}/test/", {"host": "127.0.0.1", "port": "1"}
    )
    assert response.status_code == 429
    assert "Too many connection tests" in response.content.decode()
    # Another user has a budget of their own.
    admin = as_user(world["users"]["admin"])
    assert admin.post(url, body, format="json").status_code == 200


# --- Helpers --------------------------------------------------------------------


class _CountingServer(ThreadingHTTPServer):
    hits = 0


def _serve(handler: type[BaseHTTPRequestHandler], host: str) -> _CountingServer:
    server = _CountingServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _answering_server(host: str = "127.0.0.1") -> _CountingServer:
    """An 'internal service' whose answer must never come back to the caller."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            assert isinstance(self.server, _CountingServer)
            self.server.hits += 1
            body = SINK_ANSWER.encode()
            self.send_response(418)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return _serve(Handler, host)


def _redirecting_server(location: str) -> _CountingServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return _serve(Handler, "127.0.0.1")


@pytest.fixture(autouse=True)
def _fresh_http_client() -> Iterator[None]:
    # The webhook client is pooled: a kept-alive connection from another test
    # must not carry a request past the check (it was checked when opened).
    from actions import webhooks

    webhooks._client = None
    yield
    webhooks._client = None
