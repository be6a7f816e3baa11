"""Page or fragment, decided once (mqttadmin.http.fragment_wanted): a fragment only
when htmx swaps into an element it names; following an HX-Location, a boosted link
or a history restore gets the whole page. The headers are the ones htmx 2 sends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from brokers.models import Subscription
from devices.models import DeviceImport
from tests.brokers.test_pages import form_data
from tests.brokers.test_pages_subscriptions import subscription_data
from tests.clients import (
    HTMX_HISTORY_RESTORE,
    HTMX_LOCATION,
    htmx_swap,
    logged_in,
)
from tests.factories import make_broker, make_subscription

pytestmark = pytest.mark.django_db

BOOSTED: dict[str, Any] = {"HTTP_HX_REQUEST": "true", "HTTP_HX_BOOSTED": "true"}


def whole_page(html: str) -> bool:
    """The page with everything around it: header nav, one <main>, the title."""
    return (
        html.lstrip().startswith("<!doctype html>")
        and '<header class="topbar">' in html
        and html.count("<main") == 1
        and "<title>" in html
    )


def location_path(response: Any) -> str:
    """Where an HX-Location answer sends htmx (django-htmx writes JSON)."""
    value = response["HX-Location"]
    return json.loads(value)["path"] if value.startswith("{") else value


def test_saving_a_new_subscription_lands_on_the_whole_subscriptions_tab(
    world: dict,
) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    saved = client.post(
        f"/brokers/{broker.pk}/subscriptions/new/",
        subscription_data(),
        **htmx_swap("subscription-editor"),
    )
    assert saved.status_code == 200
    path = location_path(saved)
    assert path == f"/brokers/{broker.pk}/?tab=subscriptions"
    html = client.get(path, **HTMX_LOCATION).content.decode()
    assert whole_page(html)
    assert 'aria-current="page">Subscriptions</a>' in html
    assert 'id="subscription-table"' in html
    assert "Subscription Temps saved." in html


def test_saving_an_edited_subscription_lands_on_the_whole_subscriptions_tab(
    world: dict,
) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(broker, name="Old", topic_filter="a/#")
    client = logged_in(world["users"]["operator"])
    saved = client.post(
        f"/brokers/{broker.pk}/subscriptions/{sub.pk}/edit/",
        subscription_data(name="Renamed"),
        **htmx_swap("subscription-editor"),
    )
    html = client.get(location_path(saved), **HTMX_LOCATION).content.decode()
    assert whole_page(html)
    assert "Subscription Renamed saved." in html
    assert Subscription.objects.get(pk=sub.pk).name == "Renamed"


def test_a_swap_into_the_table_gets_only_the_table(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["viewer"])
    response = client.get(
        f"/brokers/{broker.pk}/?tab=subscriptions", **htmx_swap("subscription-table")
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="subscription-table"')
    assert "<html" not in html
    # A cache must keep the fragment and the page apart.
    assert {"HX-Request", "HX-Target"} <= {
        h.strip() for h in response["Vary"].split(",")
    }


@pytest.mark.parametrize(
    "headers",
    [HTMX_LOCATION, HTMX_HISTORY_RESTORE, BOOSTED],
    ids=["hx-location", "history-restore", "boosted"],
)
@pytest.mark.parametrize("tab", ["overview", "subscriptions", "publish", "activity"])
def test_whole_body_requests_get_the_whole_broker_page(
    world: dict, headers: dict[str, Any], tab: str
) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    html = client.get(f"/brokers/{broker.pk}/?tab={tab}", **headers).content.decode()
    assert whole_page(html), html[:200]
    assert 'id="broker-status"' in html or tab != "overview"


def test_the_status_poll_still_gets_the_status_block(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["viewer"])
    html = client.get(
        f"/brokers/{broker.pk}/", **htmx_swap("broker-status")
    ).content.decode()
    assert html.lstrip().startswith('<section id="broker-status"')


def test_a_new_broker_lands_on_the_whole_broker_page(world: dict) -> None:
    client = logged_in(world["users"]["operator"], world["product"])
    created = client.post(
        "/brokers/new/", form_data(world["product"], name="Edge"), **htmx_swap("main")
    )
    if created.status_code != 200 or "HX-Location" not in created:
        pytest.fail(created.content.decode()[:2000])
    html = client.get(location_path(created), **HTMX_LOCATION).content.decode()
    assert whole_page(html)
    assert "Broker Edge created." in html


def _upload(client: Any, broker_pk: int, text: str, **headers: Any) -> Any:
    return client.post(
        "/devices/import/",
        {"broker": broker_pk, "file": SimpleUploadedFile("plant.csv", text.encode())},
        **headers,
    )


def test_the_import_result_comes_inside_the_whole_page(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"], world["product"])
    # The form swaps into <main>, which has no id: htmx sends no HX-Target.
    answer = _upload(
        client,
        broker.pk,
        "device_id,name,type,topic\nd1,Boiler,sensor,plant/d1\n",
        HTTP_HX_REQUEST="true",
    )
    job = DeviceImport.objects.get()
    path = location_path(answer)
    assert path == f"/devices/import/{job.pk}/"
    html = client.get(path, **HTMX_LOCATION).content.decode()
    assert whole_page(html)
    assert 'id="import-progress"' in html
    # Its own poll gets the progress block alone.
    poll = client.get(path, **htmx_swap("import-progress")).content.decode()
    assert poll.lstrip().startswith('<section id="import-progress"')


def test_a_bad_upload_comes_back_as_the_whole_page_for_main(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"], world["product"])
    answer = _upload(client, broker.pk, "", HTTP_HX_REQUEST="true")
    html = answer.content.decode()
    assert whole_page(html)  # hx-select="main" picks the form with its error
    assert not DeviceImport.objects.exists()
