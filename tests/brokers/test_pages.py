"""Broker pages: the role matrix, create/edit with secrets, the Test button, the
connect/disconnect toggle, subscriptions and the overview's broker cards."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from brokers import services
from brokers.models import Broker, BrokerStatus, PublishTemplate, Subscription
from mqttadmin.models import AuditEntry, Product
from tests.clients import HTMX, htmx_swap, logged_in
from tests.factories import make_broker

pytestmark = pytest.mark.django_db

STORED_PASSWORD = "stored-Secret-77"


def form_data(product: Product | None = None, **overrides: Any) -> dict[str, Any]:
    """What the broker form posts; an override of None leaves the field out."""
    data: dict[str, Any] = {
        "name": "Line 1",
        "host": "127.0.0.1",
        "port": "1883",
        "transport": "tcp",
        "ws_path": "/mqtt",
        "protocol": "5",
        "enabled": "on",
        "keepalive": "60",
        "clean_start": "on",
        "session_expiry_interval": "0",
        "connect_timeout": "10",
        "max_payload_bytes": "262144",
        "subscribe_all": "on",
    }
    if product is not None:
        data["product"] = product.pk
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def error_next_to(html: str, field: str) -> str:
    """The error text rendered right under a field (empty when there is none)."""
    match = re.search(rf'id="id_{field}-error">([^<]*)<', html)
    return match.group(1) if match else ""


# --- Role matrix ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 200),
        ("viewer", 200),
        ("outsider", 200),
    ],
)
def test_list_page_is_served_to_every_member(
    world: dict, who: str, status: int
) -> None:
    make_broker(world["product"])
    client = logged_in(world["users"][who], world["product"])
    response = client.get("/brokers/")
    assert response.status_code == status
    # The outsider cannot choose Plant: their current product stays "Other".
    assert (b"Line 1" in response.content) == (who != "outsider")


@pytest.mark.parametrize("tab", ["overview", "publish", "advanced"])
@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 200),
        ("viewer", 200),
        ("outsider", 404),
    ],
)
def test_detail_tabs_are_scoped(world: dict, who: str, status: int, tab: str) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"][who])
    response = client.get(f"/brokers/{broker.pk}/?tab={tab}")
    assert response.status_code == status


def test_unknown_tab_is_404(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["viewer"])
    assert client.get(f"/brokers/{broker.pk}/?tab=nope").status_code == 404


def _write_requests(world: dict) -> dict[str, Callable[[Client], Any]]:
    """One POST per write of the pages, each on fresh objects of Plant."""
    product = world["product"]

    def create(client: Client) -> Any:
        return client.post("/brokers/new/", form_data(product, name="New one"))

    def edit(client: Client) -> Any:
        broker = make_broker(product, name="To edit")
        return client.post(
            f"/brokers/{broker.pk}/edit/", form_data(name="Edited", port="1884")
        )

    def delete(client: Client) -> Any:
        broker = make_broker(product, name="To delete")
        return client.post(f"/brokers/{broker.pk}/delete/")

    def control(client: Client) -> Any:
        broker = make_broker(product, name="To control")
        return client.post(f"/brokers/{broker.pk}/control/", {"action": "disconnect"})

    def publish(client: Client) -> Any:
        # An invalid topic: the role check runs first, and nothing needs a broker.
        broker = make_broker(product, name="To publish")
        return client.post(
            f"/brokers/{broker.pk}/publish/",
            {"topic": "a/#", "payload": "x", "encoding": "utf8", "qos": "0"},
        )

    def template_save(client: Client) -> Any:
        broker = make_broker(product, name="To template")
        return client.post(
            f"/brokers/{broker.pk}/templates/",
            {
                "topic": "a/b",
                "payload": "x",
                "encoding": "utf8",
                "qos": "0",
                "template_name": "T",
            },
        )

    def template_delete(client: Client) -> Any:
        broker = make_broker(product, name="To untemplate")
        template = services.publish_template_save(
            actor=None, broker=broker, name="T", topic="a/b", payload="x"
        )
        return client.post(f"/brokers/{broker.pk}/templates/{template.pk}/delete/")

    def subscription_create(client: Client) -> Any:
        broker = make_broker(product, name="To subscribe")
        return client.post(
            f"/brokers/{broker.pk}/subscriptions/",
            {"name": "all", "topic_filter": "#", "qos": "0"},
        )

    def _subscription(name: str) -> Subscription:
        broker = make_broker(product, name=name)
        return services.subscription_create(
            actor=None, broker=broker, name="s", topic_filter="a/#"
        )

    def subscription_toggle(client: Client) -> Any:
        sub = _subscription("To toggle")
        return client.post(f"/brokers/{sub.broker_id}/subscriptions/{sub.pk}/toggle/")

    def subscription_delete(client: Client) -> Any:
        sub = _subscription("To unsubscribe")
        return client.post(f"/brokers/{sub.broker_id}/subscriptions/{sub.pk}/delete/")

    return {
        "create": create,
        "edit": edit,
        "delete": delete,
        "control": control,
        "publish": publish,
        "template-save": template_save,
        "template-delete": template_delete,
        "subscription-create": subscription_create,
        "subscription-toggle": subscription_toggle,
        "subscription-delete": subscription_delete,
    }


WRITES = [
    "create",
    "edit",
    "delete",
    "control",
    "publish",
    "template-save",
    "template-delete",
    "subscription-create",
    "subscription-toggle",
    "subscription-delete",
]


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("superuser", "ok"),
        ("admin", "ok"),
        ("operator", "ok"),
        ("viewer", 403),
        ("outsider", 404),
    ],
)
def test_write_role_matrix(world: dict, write: str, who: str, expected: Any) -> None:
    audit_before = AuditEntry.objects.exclude(actor=None).count()
    response = _write_requests(world)[write](logged_in(world["users"][who]))
    if expected == "ok":
        assert response.status_code in (200, 302), response.content[:500]
    else:
        assert response.status_code == expected
        # Refused requests change nothing.
        assert AuditEntry.objects.exclude(actor=None).count() == audit_before


@pytest.mark.parametrize("url", ["/brokers/new/", "/brokers/{pk}/edit/"])
def test_viewer_cannot_open_the_forms(world: dict, url: str) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["viewer"])
    assert client.get(url.format(pk=broker.pk)).status_code == 403


def test_outsider_cannot_open_the_edit_form(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["outsider"])
    assert client.get(f"/brokers/{broker.pk}/edit/").status_code == 404


WRITE_MARKERS = (
    "/control/",
    "/edit/",
    "/delete/",
    "/publish/",
    "/subscriptions/",
    "/templates/",
    "/brokers/new/",
    'name="action"',
)


def _pages(broker: Broker) -> list[str]:
    return [
        "/brokers/",
        f"/brokers/{broker.pk}/",
        f"/brokers/{broker.pk}/?tab=publish",
        f"/brokers/{broker.pk}/?tab=advanced",
    ]


def _broker_with_everything(product: Product) -> Broker:
    broker = make_broker(product)
    services.subscription_create(
        actor=None, broker=broker, name="all", topic_filter="#"
    )
    services.publish_template_save(
        actor=None, broker=broker, name="Ping", topic="a/b", payload="x"
    )
    return broker


def test_viewers_see_no_write_buttons(world: dict) -> None:
    broker = _broker_with_everything(world["product"])
    client = logged_in(world["users"]["viewer"])
    for url in _pages(broker):
        html = client.get(url).content.decode()
        assert "Line 1" in html
        for marker in WRITE_MARKERS:
            assert marker not in html, (url, marker)
    publish_tab = client.get(f"/brokers/{broker.pk}/?tab=publish").content.decode()
    assert "Ping" in publish_tab and 'name="topic"' not in publish_tab


def test_operators_see_the_write_buttons(world: dict) -> None:
    broker = _broker_with_everything(world["product"])
    client = logged_in(world["users"]["operator"])
    html = client.get("/brokers/").content.decode()
    assert "/brokers/new/" in html and f"/brokers/{broker.pk}/control/" in html
    overview = client.get(f"/brokers/{broker.pk}/").content.decode()
    for marker in ("/control/", "/edit/", "/delete/", "/subscriptions/"):
        assert marker in overview
    publish_tab = client.get(f"/brokers/{broker.pk}/?tab=publish").content.decode()
    assert 'name="topic"' in publish_tab and "/templates/" in publish_tab


def test_brokers_is_in_the_navigation(world: dict) -> None:
    html = logged_in(world["users"]["viewer"]).get("/").content.decode()
    assert 'href="/brokers/"' in html


# --- Create ---------------------------------------------------------------------


def test_create_with_the_hash_subscription(world: dict) -> None:
    client = logged_in(world["users"]["operator"])
    response = client.post("/brokers/new/", form_data(world["product"]))
    broker = Broker.objects.get(name="Line 1")
    assert response.status_code == 302
    assert response["Location"] == f"/brokers/{broker.pk}/"
    assert broker.product == world["product"] and broker.client_id
    sub = Subscription.objects.get(broker=broker)
    assert (sub.name, sub.topic_filter, sub.qos, sub.store_messages) == (
        "All topics",
        "#",
        0,
        True,
    )
    entry = AuditEntry.objects.get(action="broker.create")
    assert entry.source == "page" and entry.actor == world["users"]["operator"]
    assert AuditEntry.objects.get(action="subscription.create").source == "page"


def test_create_without_the_hash_subscription(world: dict) -> None:
    client = logged_in(world["users"]["operator"])
    client.post("/brokers/new/", form_data(world["product"], subscribe_all=None))
    assert Broker.objects.filter(name="Line 1").exists()
    assert not Subscription.objects.exists()


def test_create_form_offers_the_hash_subscription_checked(world: dict) -> None:
    html = logged_in(world["users"]["operator"]).get("/brokers/new/").content.decode()
    assert re.search(r'<input type="checkbox" name="subscribe_all"[^>]*checked', html)
    assert "Test connection" in html


def test_create_over_htmx_answers_with_hx_location(world: dict) -> None:
    client = logged_in(world["users"]["operator"])
    response = client.post("/brokers/new/", form_data(world["product"]), **HTMX)
    broker = Broker.objects.get(name="Line 1")
    assert response.status_code == 200
    assert f"/brokers/{broker.pk}/" in response["HX-Location"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", "70000", "less than or equal to 65535"),
        ("client_id", "sensor\x1b1", "must not contain control characters"),
        ("ca_cert", "-----BEGIN CERTIFICATE-----\nnope\n", "Not a PEM certificate"),
        ("fallback_hosts", "backup", "is not host:port"),
        ("name", "Taken", "already has a broker named"),
    ],
)
def test_bad_input_shows_the_error_next_to_the_field(
    world: dict, field: str, value: str, message: str
) -> None:
    make_broker(world["product"], name="Taken")
    client = logged_in(world["users"]["operator"])
    data = form_data(world["product"], name="Fresh", use_tls="on")
    data[field] = value
    response = client.post("/brokers/new/", data)
    assert response.status_code == 200
    assert message in error_next_to(response.content.decode(), field)
    assert list(Broker.objects.values_list("name", flat=True)) == ["Taken"]
    assert not Subscription.objects.exists()
    assert not AuditEntry.objects.exclude(actor=None).exists()


def test_model_rules_show_next_to_their_field(world: dict) -> None:
    client = logged_in(world["users"]["operator"])
    data = form_data(world["product"], tls_insecure="on")  # without use_tls
    html = client.post("/brokers/new/", data).content.decode()
    assert "Only meaningful with TLS on." in error_next_to(html, "tls_insecure")
    assert not Broker.objects.exists()


# --- Edit and secrets -----------------------------------------------------------


def _secret_broker(world: dict, tls_material: Any) -> Broker:
    return make_broker(
        world["product"],
        username="sensor",
        password=STORED_PASSWORD,
        use_tls=True,
        ca_cert=tls_material.ca_pem,
        client_cert=tls_material.server_cert.read_text(),
        client_key=tls_material.server_key.read_text(),
    )


def _edit_data(broker: Broker, **overrides: Any) -> dict[str, Any]:
    return form_data(
        name=broker.name,
        username=broker.username,
        use_tls="on" if broker.use_tls else None,
        ca_cert=broker.ca_cert,
        client_cert=broker.client_cert,
        client_id=broker.client_id,
        subscribe_all=None,
        **overrides,
    )


def test_pages_never_contain_the_stored_secrets(world: dict, tls_material: Any) -> None:
    broker = _secret_broker(world, tls_material)
    key_line = broker.client_key.strip().splitlines()[1]
    client = logged_in(world["users"]["admin"])
    urls = [f"/brokers/{broker.pk}/edit/", *_pages(broker)]
    for url in urls:
        html = client.get(url).content.decode()
        assert STORED_PASSWORD not in html and key_line not in html, url
    edit = client.get(f"/brokers/{broker.pk}/edit/").content.decode()
    assert "leave empty to keep it" in edit
    assert 'name="clear_password"' in edit and 'name="clear_client_key"' in edit
    # Nor after a failed save that re-renders the form.
    html = client.post(
        f"/brokers/{broker.pk}/edit/", _edit_data(broker, port="0")
    ).content.decode()
    assert STORED_PASSWORD not in html and key_line not in html
    assert "Edit Line 1" in html  # the stored name, not the posted one


def test_edit_with_empty_secrets_keeps_them(world: dict, tls_material: Any) -> None:
    broker = _secret_broker(world, tls_material)
    key = broker.client_key
    client = logged_in(world["users"]["operator"])
    # Browsers post textareas with CRLF: the unchanged certificates are no change.
    data = _edit_data(broker, keepalive="30")
    for name in ("ca_cert", "client_cert"):
        data[name] = data[name].replace("\n", "\r\n")
    response = client.post(f"/brokers/{broker.pk}/edit/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    broker.refresh_from_db()
    assert broker.keepalive == 30
    assert broker.password == STORED_PASSWORD and broker.client_key == key
    entry = AuditEntry.objects.get(action="broker.update")
    assert entry.source == "page" and entry.changes == {"keepalive": [60, 30]}


def test_edit_to_another_port_needs_the_secrets_again(
    world: dict, tls_material: Any
) -> None:
    """Stored secrets stay with the host:port they were saved for
    (tests/security/test_secret_binding.py)."""
    broker = _secret_broker(world, tls_material)
    client = logged_in(world["users"]["operator"])
    html = client.post(
        f"/brokers/{broker.pk}/edit/", _edit_data(broker, port="8883")
    ).content.decode()
    assert "Enter the password again" in error_next_to(html, "password")
    assert "Enter the client key again" in error_next_to(html, "client_key")
    broker.refresh_from_db()
    assert broker.port == 1883


def test_edit_clear_removes_the_password(world: dict, tls_material: Any) -> None:
    broker = _secret_broker(world, tls_material)
    client = logged_in(world["users"]["operator"])
    client.post(f"/brokers/{broker.pk}/edit/", _edit_data(broker, clear_password="on"))
    broker.refresh_from_db()
    assert broker.password == ""
    entry = AuditEntry.objects.get(action="broker.update")
    assert entry.changes == {"password": ["***", None]}
    assert STORED_PASSWORD not in str(entry.changes)


def test_edit_sets_a_new_password(world: dict, tls_material: Any) -> None:
    broker = _secret_broker(world, tls_material)
    client = logged_in(world["users"]["operator"])
    client.post(f"/brokers/{broker.pk}/edit/", _edit_data(broker, password="n3w-one"))
    broker.refresh_from_db()
    assert broker.password == "n3w-one"
    assert AuditEntry.objects.get(action="broker.update").changes == {
        "password": ["***", "***"]
    }


def test_delete_through_the_page(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    assert client.get(f"/brokers/{broker.pk}/delete/").status_code == 200
    response = client.post(f"/brokers/{broker.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/brokers/"
    assert not Broker.objects.exists()
    assert AuditEntry.objects.get(action="broker.delete").source == "page"


# --- Control toggle and status partials -------------------------------------------


def test_control_toggle_answers_htmx_with_the_row(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    url = f"/brokers/{broker.pk}/control/"
    target = {"HTTP_HX_TARGET": f"broker-{broker.pk}", **HTMX}
    response = client.post(url, {"action": "disconnect"}, **target)
    html = response.content.decode()
    broker.refresh_from_db()
    assert broker.enabled is False
    assert html.strip().startswith(f'<tr id="broker-{broker.pk}"')
    assert 'value="connect"' in html and "<html" not in html
    assert "brokerChanged" in response["HX-Trigger"]
    client.post(url, {"action": "connect"}, **target)
    broker.refresh_from_db()
    assert broker.enabled is True
    assert [e.action for e in AuditEntry.objects.order_by("id")][-2:] == [
        "broker.disconnect",
        "broker.connect",
    ]


def test_control_from_the_detail_page_answers_with_the_status_block(
    world: dict,
) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    response = client.post(
        f"/brokers/{broker.pk}/control/",
        {"action": "disconnect"},
        **htmx_swap("broker-status"),
    )
    assert 'id="broker-status"' in response.content.decode()
    assert 'value="connect"' in response.content.decode()


def test_control_without_javascript_redirects(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    response = client.post(
        f"/brokers/{broker.pk}/control/",
        {"action": "disconnect", "next": "https://evil.example/"},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/brokers/{broker.pk}/"


def test_unknown_control_action_changes_nothing(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    client.post(f"/brokers/{broker.pk}/control/", {"action": "explode"})
    broker.refresh_from_db()
    assert broker.enabled is True


def test_status_partials_refresh_from_the_same_views(world: dict) -> None:
    broker = make_broker(world["product"])
    BrokerStatus.objects.filter(broker=broker).update(
        state="error", connection_error="Connection refused", messages_received=7
    )
    client = logged_in(world["users"]["viewer"])
    # Each poll names its own element: htmx sends the id as HX-Target.
    rows = client.get("/brokers/", **htmx_swap("broker-rows")).content.decode()
    assert rows.strip().startswith('<tbody id="broker-rows"') and "<html" not in rows
    assert 'class="dot error"' in rows and "Connection refused" in rows
    poll = htmx_swap("broker-status")
    block = client.get(f"/brokers/{broker.pk}/", **poll).content.decode()
    assert block.strip().startswith('<section id="broker-status"')
    assert 'hx-trigger="every 5s"' in block
    assert "Connection refused" in block and ">7<" in block


def test_broker_without_a_status_row_shows_disconnected(world: dict) -> None:
    broker = Broker.objects.create(product=world["product"], name="Bare", host="h")
    client = logged_in(world["users"]["viewer"])
    html = client.get(f"/brokers/{broker.pk}/").content.decode()
    assert 'class="dot disconnected"' in html
    assert not BrokerStatus.objects.exists()  # reading creates nothing


# --- Subscriptions on the Overview tab --------------------------------------------


def test_subscription_add_toggle_delete(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    base = f"/brokers/{broker.pk}/subscriptions/"
    html = client.post(
        base, {"name": "Temps", "topic_filter": "plant/+/temp", "qos": "1"}, **HTMX
    ).content.decode()
    sub = Subscription.objects.get(name="Temps")
    assert "plant/+/temp" in html and "<html" not in html
    assert sub.qos == 1 and sub.enabled
    client.post(f"{base}{sub.pk}/toggle/", **HTMX)
    sub.refresh_from_db()
    assert not sub.enabled
    client.post(f"{base}{sub.pk}/toggle/")
    sub.refresh_from_db()
    assert sub.enabled
    client.post(f"{base}{sub.pk}/delete/", **HTMX)
    assert not Subscription.objects.exists()


def test_bad_subscription_filter_is_refused(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    html = client.post(
        f"/brokers/{broker.pk}/subscriptions/",
        {"name": "Bad", "topic_filter": "plant/#/temp", "qos": "0"},
        **HTMX,
    ).content.decode()
    assert "# must be the last level" in error_next_to(html, "topic_filter")
    assert not Subscription.objects.exists()


def test_subscription_of_another_broker_is_404(world: dict) -> None:
    one = make_broker(world["product"], name="One")
    two = make_broker(world["product"], name="Two")
    sub = services.subscription_create(
        actor=None, broker=two, name="s", topic_filter="#"
    )
    client = logged_in(world["users"]["operator"])
    url = f"/brokers/{one.pk}/subscriptions/{sub.pk}/toggle/"
    assert client.post(url).status_code == 404


def test_template_of_another_broker_is_404(world: dict) -> None:
    one = make_broker(world["product"], name="One")
    two = make_broker(world["product"], name="Two")
    template = services.publish_template_save(
        actor=None, broker=two, name="T", topic="a", payload=""
    )
    client = logged_in(world["users"]["operator"])
    url = f"/brokers/{one.pk}/templates/{template.pk}/delete/"
    assert client.post(url).status_code == 404
    assert PublishTemplate.objects.exists()


# --- Overview cards ---------------------------------------------------------------


def test_overview_shows_the_current_products_broker_cards(world: dict) -> None:
    broker = make_broker(world["product"], name="Boiler house")
    BrokerStatus.objects.filter(broker=broker).update(
        state="connected", messages_received=4242, connection_error="old hiccup"
    )
    make_broker(world["other"], name="Not yours")
    html = logged_in(world["users"]["viewer"]).get("/").content.decode()
    card = html[html.index(f'id="broker-card-{broker.pk}"') :]
    card = card[: card.index("</article>")]
    assert "Boiler house" in card and 'class="dot connected"' in card
    assert "4242" in card and "old hiccup" in card
    assert f"/brokers/{broker.pk}/" in card
    assert "Not yours" not in html
