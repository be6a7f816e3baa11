"""Device pages: tiles with server-drawn sparklines, the detail page's charts, raw
table and command box, create/edit/delete with the role matrix."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker, Subscription
from devices.models import AlertRule, Device
from mqttadmin.models import AuditEntry
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.clients import HTMX, htmx_swap, logged_in
from tests.factories import make_broker, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def plant(world: dict[str, Any]) -> dict[str, Any]:
    product = world["product"]
    broker = make_broker(product)
    device = make_device(
        product, broker, "d1", name="Boiler", availability_topic="plant/d1/status"
    )
    return {
        "product": product,
        "broker": broker,
        "device": device,
        "users": world["users"],
        "other": world["other"],
    }


def feed(broker: Broker, minutes_ago: list[int], topic: str = "plant/d1/t") -> None:
    """Readings through the ingest path, one per given minute in the past hour."""
    now = timezone.now()
    store_batch(
        [ReceivedMessage(broker.pk, "plant/d1/status", b"online", 1, False, now)]
        + [
            ReceivedMessage(
                broker.pk,
                topic,
                f'{{"temperature": {20 + i}, "env": {{"hum": {40 - i}}}}}'.encode(),
                0,
                False,
                now - datetime.timedelta(minutes=m),
            )
            for i, m in enumerate(sorted(minutes_ago, reverse=True))
        ]
    )


def page(plant: dict[str, Any], url: str, who: str = "viewer", **extra: Any) -> Any:
    return logged_in(plant["users"][who], plant["product"]).get(url, **extra)


def test_tiles_show_status_values_and_inline_svg_sparklines(
    plant: dict[str, Any],
) -> None:
    feed(plant["broker"], [50, 40, 30, 20, 10, 1])

    response = page(plant, "/devices/")

    assert response.status_code == 200
    html = response.content.decode()
    tile = html[html.index('id="device-tile-') :]
    assert "Boiler" in tile and "Online" in tile
    assert "temperature" in tile and "env.hum" in tile
    sparks = re.findall(r'<svg class="sparkline"[^>]*>.*?</svg>', tile, re.S)
    assert len(sparks) == 2
    found = re.search(r'points="([^"]+)"', sparks[1])
    assert found is not None
    # Six readings of the last hour in 15-minute averages: four or five points,
    # all in the last hour's 24th of the 24-hour line (x is time, not a count).
    xs = [float(point.split(",")[0]) for point in found.group(1).split()]
    assert 4 <= len(xs) <= 5
    assert min(xs) > 120 * (1 - 1.5 / 24)
    assert 'title="env.hum"' in tile  # the whole key on hover
    assert "<script" not in html.split("</head>")[1]  # no inline scripts


def test_a_sparkline_covers_a_day_and_leaves_a_silence_as_a_gap(
    plant: dict[str, Any],
) -> None:
    feed(plant["broker"], [20 * 60, 20 * 60 - 15, 30, 15, 1])

    html = page(plant, "/devices/").content.decode()

    spark = re.findall(r'<svg class="sparkline"[^>]*>.*?</svg>', html, re.S)[1]
    lines = re.findall(r'<polyline points="([^"]+)"', spark)
    assert len(lines) == 2  # twenty hours without a reading are not drawn over
    first_x = float(lines[0].split()[0].split(",")[0])
    assert 120 * 3.5 / 24 < first_x < 120 * 4.5 / 24  # 20 h ago: a sixth in


def test_a_device_without_recent_data_gets_an_empty_sparkline(
    plant: dict[str, Any],
) -> None:
    Device.objects.filter(pk=plant["device"].pk).update(
        last_values={"t": {"value": 1.5, "ts": "2020-01-01T00:00:00+00:00"}}
    )
    html = page(plant, "/devices/").content.decode()
    assert 'class="sparkline empty"' in html


def test_the_tiles_poll_returns_only_the_tiles(plant: dict[str, Any]) -> None:
    feed(plant["broker"], [5])
    poll = htmx_swap("device-tiles")
    response = page(plant, "/devices/?status=online", **poll)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="device-tiles"')
    assert "<html" not in html
    assert 'hx-get="/devices/?status=online"' in html
    assert "Boiler" in html
    assert (
        "Boiler" not in page(plant, "/devices/?status=offline", **poll).content.decode()
    )


def test_tiles_show_the_current_products_devices_only(plant: dict[str, Any]) -> None:
    outsider = plant["users"]["outsider"]
    html = logged_in(outsider, plant["other"]).get("/devices/").content.decode()
    assert "Boiler" not in html


def test_the_detail_page_draws_charts_and_the_raw_table(plant: dict[str, Any]) -> None:
    feed(plant["broker"], [30, 20, 10])

    html = page(plant, f"/devices/{plant['device'].pk}/?range=6h").content.decode()

    assert html.count('<svg class="chart"') == 2  # env.hum and temperature
    assert 'aria-current="page">6 hours' in html
    assert html.count("<td>temperature</td>") == 3
    assert "Sending commands needs the operator role" in html
    raw = page(plant, f"/devices/{plant['device'].pk}/?key=env.hum").content.decode()
    assert raw.count("<td>env.hum</td>") == 3 and "<td>temperature</td>" not in raw


def test_the_detail_poll_returns_the_live_block(plant: dict[str, Any]) -> None:
    feed(plant["broker"], [1])
    html = page(
        plant,
        f"/devices/{plant['device'].pk}/",
        **htmx_swap("device-live"),
    ).content.decode()
    assert html.lstrip().startswith('<section id="device-live"')
    assert "Online" in html and "temperature" in html


@pytest.mark.parametrize(
    ("who", "status"),
    [("viewer", 200), ("operator", 200), ("outsider", 404)],
)
def test_the_detail_page_role_matrix(
    plant: dict[str, Any], who: str, status: int
) -> None:
    response = page(plant, f"/devices/{plant['device'].pk}/", who=who)
    assert response.status_code == status
    if who == "operator":
        html = response.content.decode()
        assert "Send command" in html and "Add rule" in html


FORM = {
    "device_id": "d2",
    "name": "Pump",
    "type": "actuator",
    "topic": "plant/d2",
    "telemetry_topic": "",
    "command_topic": "",
    "availability_topic": "",
    "payload_online": "online",
    "payload_offline": "offline",
    "stale_after_s": "300",
    "telemetry_retention_days": "",
}


@pytest.mark.parametrize(("who", "status"), [("operator", 302), ("viewer", 403)])
def test_operators_create_devices_on_the_page(
    plant: dict[str, Any], who: str, status: int
) -> None:
    client = logged_in(plant["users"][who], plant["product"])
    response = client.post("/devices/new/", {**FORM, "broker": plant["broker"].pk})
    assert response.status_code == status
    if status == 302:
        device = Device.objects.get(device_id="d2")
        assert response["Location"] == f"/devices/{device.pk}/"
        assert device.telemetry_topic == "plant/d2/#"
        assert Subscription.objects.filter(topic_filter="plant/d2/#").exists()


def test_the_form_names_bad_fields(plant: dict[str, Any]) -> None:
    client = logged_in(plant["users"]["operator"], plant["product"])
    response = client.post(
        "/devices/new/",
        {**FORM, "device_id": "d1", "topic": "a/#", "broker": plant["broker"].pk},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="id_device_id-error"' in html and 'id="id_topic-error"' in html


def test_operators_edit_and_delete_devices(plant: dict[str, Any]) -> None:
    device = plant["device"]
    client = logged_in(plant["users"]["operator"], plant["product"])
    data = {
        **FORM,
        "device_id": "d1",
        "name": "Boiler 2",
        "type": "",
        "topic": "plant/d1",
        "availability_topic": "plant/d1/status",
        "telemetry_topic": "plant/d1/#",
        "command_topic": "plant/d1/cmd",
        "broker": plant["broker"].pk,
    }
    assert client.post(f"/devices/{device.pk}/edit/", data).status_code == 302
    device.refresh_from_db()
    assert device.name == "Boiler 2"
    entry = AuditEntry.objects.filter(action="device.update").get()
    assert entry.changes == {"name": ["Boiler", "Boiler 2"]}

    viewer = logged_in(plant["users"]["viewer"], plant["product"])
    assert viewer.post(f"/devices/{device.pk}/delete/").status_code == 403
    assert client.post(f"/devices/{device.pk}/delete/").status_code == 302
    assert not Device.objects.filter(pk=device.pk).exists()


def test_rules_are_added_and_removed_on_the_detail_page(plant: dict[str, Any]) -> None:
    device = plant["device"]
    client = logged_in(plant["users"]["operator"], plant["product"])
    response = client.post(
        f"/devices/{device.pk}/rules/",
        {"key": "temperature", "op": ">", "threshold": "80", "severity": "warning"},
        **HTMX,
    )
    assert response.status_code == 200
    rule = AlertRule.objects.get()
    assert (rule.device, rule.product) == (device, plant["product"])
    assert "temperature &gt; 80.0" in response.content.decode()

    viewer = logged_in(plant["users"]["viewer"], plant["product"])
    assert (
        viewer.post(f"/devices/{device.pk}/rules/{rule.pk}/delete/").status_code == 403
    )
    client.post(f"/devices/{device.pk}/rules/{rule.pk}/delete/", **HTMX)
    assert not AlertRule.objects.exists()


@pytest.mark.mosquitto
def test_the_command_box_publishes(plant: dict[str, Any], plain_broker: Any) -> None:
    from tests.devices.simulator import Capture

    Broker.objects.filter(pk=plant["broker"].pk).update(port=plain_broker.port)
    capture = Capture(plain_broker.port, plant["broker"].pk, "plant/d1/cmd")
    try:
        client = logged_in(plant["users"]["operator"], plant["product"])
        response = client.post(
            f"/devices/{plant['device'].pk}/command/",
            {"payload": '{"on": true}', "qos": "1"},
            **HTMX,
        )
        (message,) = capture.take(1)
    finally:
        capture.stop()
    assert "Sent to plant/d1/cmd" in response.content.decode()
    assert message.payload == b'{"on": true}'


def test_the_nav_shows_devices_and_alerts(plant: dict[str, Any]) -> None:
    html = page(plant, "/").content.decode()
    assert 'href="/devices/"' in html and 'href="/alerts/"' in html


def test_the_detail_page_puts_command_and_rules_before_charts_and_raw_points(
    plant: dict[str, Any],
) -> None:
    feed(plant["broker"], [3])
    html = page(plant, f"/devices/{plant['device'].pk}/", who="operator")
    text = html.content.decode()
    order = [
        text.index(marker)
        for marker in (
            'id="device-command"',
            'id="device-rules"',
            'class="device-charts"',
            'id="device-raw"',
        )
    ]
    assert order == sorted(order)


def test_raw_points_come_fifty_a_page_with_and_without_htmx(
    plant: dict[str, Any],
) -> None:
    feed(plant["broker"], list(range(1, 31)))  # 30 readings, two keys: 60 points
    url = f"/devices/{plant['device'].pk}/"

    first = page(plant, url).content.decode()
    assert first.count("<td>temperature</td>") + first.count("<td>env.hum</td>") == 50
    assert 'rel="next"' in first and 'rel="prev"' not in first

    second = page(plant, url + "?range=1h&page=2").content.decode()
    assert "<main" in second  # a page of its own, without JavaScript
    assert second.count("<td>temperature</td>") + second.count("<td>env.hum</td>") == 10
    assert 'rel="prev"' in second and 'rel="next"' not in second

    fragment = page(
        plant, url + "?range=1h&page=2", **htmx_swap("device-raw")
    ).content.decode()
    assert fragment.lstrip().startswith('<div id="device-raw">')
    assert "<main" not in fragment
    assert 'hx-get="/devices/' in fragment and "page=1" in fragment

    one_key = page(plant, url + "?key=env.hum").content.decode()
    assert one_key.count("<td>env.hum</td>") == 30 and 'rel="next"' not in one_key
    assert page(plant, url + "?page=abc").status_code == 200


def test_new_device_and_import_without_a_broker_say_so_and_link_to_add_one(
    world: dict[str, Any],
) -> None:
    operator = logged_in(world["users"]["operator"], world["product"])
    for url in ("/devices/new/", "/devices/import/"):
        html = operator.get(url).content.decode()
        assert 'id="needs-broker"' in html, url
        assert 'href="/brokers/new/"' in html
        assert 'name="device_id"' not in html and 'type="file"' not in html
    tiles = operator.get("/devices/").content.decode()
    assert 'id="no-devices"' in tiles and 'href="/brokers/new/"' in tiles


def test_an_empty_devices_page_offers_create_and_import_to_operators_only(
    world: dict[str, Any],
) -> None:
    make_broker(world["product"])
    operator = logged_in(world["users"]["operator"], world["product"])
    html = operator.get("/devices/").content.decode()
    empty = html[html.index('id="no-devices"') :]
    assert 'href="/devices/new/"' in empty and 'href="/devices/import/"' in empty
    viewer = logged_in(world["users"]["viewer"], world["product"])
    html = viewer.get("/devices/").content.decode()
    assert 'id="no-devices"' in html
    assert "/devices/new/" not in html and "/devices/import/" not in html
    assert "An operator of this product adds devices" in html


def test_raw_pages_stay_put_while_new_points_arrive(plant: dict[str, Any]) -> None:
    feed(plant["broker"], list(range(2, 32)))  # 60 points
    url = f"/devices/{plant['device'].pk}/"
    first = page(plant, url).content.decode()
    found = re.search(r'href="([^"]+)" hx-get="[^"]+" [^>]*rel="next"', first)
    assert found is not None
    older = found.group(1).replace("&amp;", "&")
    assert "until=" in older

    feed(plant["broker"], [0, 0, 0, 0, 0])  # 10 newer points
    second = page(plant, older).content.decode()
    rows = second.count("<td>temperature</td>") + second.count("<td>env.hum</td>")
    assert rows == 10  # the same 10 oldest, not shifted by the newcomers
    assert page(plant, url + "?until=yesterday").status_code == 200


def test_a_key_s_values_share_one_precision_on_every_page(
    plant: dict[str, Any],
) -> None:
    now = timezone.now()
    store_batch(
        [
            ReceivedMessage(
                plant["broker"].pk,
                "plant/d1/t",
                f'{{"temperature": {value}}}'.encode(),
                0,
                False,
                now - datetime.timedelta(minutes=minutes),
            )
            for value, minutes in ((21.25, 3), (21.5, 2), (22, 1))
        ]
    )
    device = plant["device"]
    detail = page(plant, f"/devices/{device.pk}/").content.decode()
    tiles = page(plant, "/devices/").content.decode()
    # The latest value, 22, is written as wide as the key has needed.
    assert "<strong>22.00</strong><small>temperature</small>" in detail
    assert re.search(r'<td class="num">22\.00</td>', tiles)
    # Raw rows of the key line up: 22.00, 21.50, 21.25.
    raw = re.findall(r'<td class="num">(\d+\.\d+)</td>', detail)
    assert raw[:3] == ["22.00", "21.50", "21.25"]
