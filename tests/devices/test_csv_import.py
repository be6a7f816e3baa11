"""CSV import: a good file creates every device with its subscriptions; any bad row
imports nothing and every problem names its line; the page shows progress."""

from __future__ import annotations

from typing import Any

import pytest
from celery import current_app
from django.core.files.uploadedfile import SimpleUploadedFile

from brokers.models import Subscription
from devices import csv_import, tasks  # noqa: F401 (registers the tasks)
from devices.models import Device, DeviceImport
from mqttadmin import background
from mqttadmin.models import AuditEntry
from tests.clients import HTMX, as_user, logged_in
from tests.factories import make_broker, make_device

pytestmark = pytest.mark.django_db

GOOD = (
    "device_id,name,type,topic,availability_topic\n"
    "d1,Boiler,sensor,plant/d1,plant/d1/status\n"
    "d2,Pump,actuator,plant/d2,\n"
    '"d3","Fan, north",fan,plant/d3,plant/d3/status\n'
)


@pytest.fixture
def plant(world: dict[str, Any]) -> dict[str, Any]:
    product = world["product"]
    return {
        "product": product,
        "broker": make_broker(product),
        "users": world["users"],
        "other": world["other"],
    }


def post_csv(plant: dict[str, Any], text: str, who: str = "operator") -> Any:
    url = (
        f"/api/v1/devices/import/?product={plant['product'].pk}"
        f"&broker={plant['broker'].pk}"
    )
    # The ignores on .generic(): DRF's stubs take str data; Django's test client
    # sends bytes as given (the CSV encodings are what these tests are about).
    return as_user(plant["users"][who]).generic(
        "POST",
        url,
        text.encode(),  # type: ignore[arg-type]
        content_type="text/csv",
    )


def test_a_good_file_creates_every_device_and_its_subscriptions(
    plant: dict[str, Any],
) -> None:
    response = post_csv(plant, GOOD)

    assert response.status_code == 201, response.content
    assert response.json()["imported"] == 3
    devices = {d.device_id: d for d in Device.objects.filter(product=plant["product"])}
    assert devices["d3"].name == "Fan, north"
    assert devices["d1"].telemetry_topic == "plant/d1/#"
    assert devices["d2"].command_topic == "plant/d2/cmd"
    assert devices["d2"].availability_subscription_id is None
    filters = set(
        Subscription.objects.filter(broker=plant["broker"]).values_list(
            "topic_filter", flat=True
        )
    )
    assert filters == {
        "plant/d1/#",
        "plant/d1/status",
        "plant/d2/#",
        "plant/d3/#",
        "plant/d3/status",
    }
    assert devices["d1"].availability_subscription.topic_filter == "plant/d1/status"
    entry = AuditEntry.objects.get(action="device.import")
    assert entry.changes["devices"] == [None, 3]


def test_a_multipart_file_works_too(plant: dict[str, Any]) -> None:
    url = (
        f"/api/v1/devices/import/?product={plant['product'].pk}"
        f"&broker={plant['broker'].pk}"
    )
    upload = SimpleUploadedFile("devices.csv", ("\ufeff" + GOOD).encode("utf-8"))
    response = as_user(plant["users"]["operator"]).post(
        url, {"file": upload}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert response.json()["imported"] == 3


def test_bad_rows_are_reported_with_lines_and_nothing_is_imported(
    plant: dict[str, Any],
) -> None:
    make_device(plant["product"], plant["broker"], "taken")
    text = (
        "device_id,name,type,topic\n"
        "ok1,Fine,sensor,plant/ok1\n"
        "dup,First,sensor,plant/dup\n"
        "\n"
        "dup,Second,sensor,plant/dup2\n"
        "taken,Exists,sensor,plant/taken\n"
        "bad id,Spaces,sensor,plant/x\n"
        "w1,Wild,sensor,plant/+/x\n"
        "n1,,sensor,plant/n1\n"
        "short,row\n"
    )

    response = post_csv(plant, text)

    assert response.status_code == 400
    body = response.json()
    assert body["imported"] == 0
    problems = [(e["line"], e["field"]) for e in body["errors"]]
    assert problems == [
        (5, "device_id"),
        (6, "device_id"),
        (7, "device_id"),
        (8, "topic"),
        (9, "name"),
        (10, "row"),
    ]
    reasons = {e["line"]: e["reason"] for e in body["errors"]}
    assert "line 3" in reasons[5]
    assert "exists" in reasons[6]
    assert Device.objects.filter(product=plant["product"]).count() == 1
    assert Subscription.objects.filter(broker=plant["broker"]).count() == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("device_id,name,topic\nd1,x,plant/d1\n", "missing columns: type"),
        ("device_id,name,type,topic,colour\n", "unknown columns: colour"),
    ],
)
def test_bad_headers_are_reported(
    plant: dict[str, Any], text: str, reason: str
) -> None:
    response = post_csv(plant, text)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["line"] == 1 and reason in error["reason"].lower()


def test_a_file_that_is_not_utf8_is_refused(plant: dict[str, Any]) -> None:
    url = (
        f"/api/v1/devices/import/?product={plant['product'].pk}"
        f"&broker={plant['broker'].pk}"
    )
    response = as_user(plant["users"]["operator"]).generic(
        "POST",
        url,
        "device_id\n\xe9".encode("latin-1"),  # type: ignore[arg-type]
        content_type="text/csv",
    )
    assert response.status_code == 400
    assert "UTF-8" in response.json()["errors"][0]["reason"]


def test_import_needs_an_operator_of_the_product(plant: dict[str, Any]) -> None:
    assert post_csv(plant, GOOD, who="viewer").status_code == 403
    assert post_csv(plant, GOOD, who="outsider").status_code == 404
    other_broker = make_broker(plant["other"], name="Theirs")
    url = (
        f"/api/v1/devices/import/?product={plant['product'].pk}"
        f"&broker={other_broker.pk}"
    )
    response = as_user(plant["users"]["operator"]).generic(
        "POST",
        url,
        GOOD.encode(),  # type: ignore[arg-type]
        content_type="text/csv",
    )
    assert response.status_code == 404
    assert not Device.objects.exists()


def test_import_needs_product_and_broker(plant: dict[str, Any]) -> None:
    response = as_user(plant["users"]["operator"]).generic(
        "POST",
        "/api/v1/devices/import/",
        GOOD.encode(),  # type: ignore[arg-type]
        content_type="text/csv",
    )
    assert response.status_code == 400 and "product" in response.json()


# --- The page -----------------------------------------------------------------


@pytest.fixture
def run_tasks_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run background tasks in the test's thread (its transaction holds the data)."""
    monkeypatch.setattr(
        background,
        "enqueue",
        lambda name, *args, queue=None: current_app.tasks[name].apply(args=args),
    )


def upload(plant: dict[str, Any], text: str, **extra: Any) -> Any:
    client = logged_in(plant["users"]["operator"], plant["product"])
    return client.post(
        "/devices/import/",
        {
            "broker": plant["broker"].pk,
            "file": SimpleUploadedFile("plant.csv", text.encode()),
        },
        **extra,
    )


def test_the_page_imports_in_the_background_and_shows_progress(
    plant: dict[str, Any],
    run_tasks_here: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(plant, GOOD)
    job = DeviceImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/devices/import/{job.pk}/"
    client = logged_in(plant["users"]["operator"], plant["product"])
    waiting = client.get(response["Location"])
    assert "Waiting for a worker" in waiting.content.decode()
    assert 'hx-trigger="every 1s"' in waiting.content.decode()

    for callback in callbacks:
        callback()

    job.refresh_from_db()
    assert (job.state, job.total, job.processed, job.imported) == ("done", 3, 3, 3)
    assert job.text == ""
    done = client.get(response["Location"], **HTMX).content.decode()
    assert "Imported 3 devices." in done
    assert "hx-trigger" not in done  # finished: the poll stops
    assert Device.objects.filter(product=plant["product"]).count() == 3


def test_the_page_lists_the_errors_of_a_bad_file(
    plant: dict[str, Any],
    run_tasks_here: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(plant, "device_id,name,type,topic\nx y,a,b,c/#\n", **HTMX)
    job = DeviceImport.objects.get()
    assert response.status_code == 200
    assert response["HX-Location"].startswith(f'{{"path": "/devices/import/{job.pk}/')

    page = logged_in(plant["users"]["operator"], plant["product"]).get(
        f"/devices/import/{job.pk}/"
    )
    html = page.content.decode()
    assert job.__class__.objects.get().state == "failed"
    assert "Nothing was imported" in html
    assert '<td class="num">2</td>' in html
    assert not Device.objects.exists()


def test_progress_is_saved_while_rows_are_checked(plant: dict[str, Any]) -> None:
    rows = "".join(f"d{i},Device {i},sensor,plant/d{i}\n" for i in range(1200))
    job = DeviceImport.objects.create(
        product=plant["product"],
        broker=plant["broker"],
        text="device_id,name,type,topic\n" + rows,
    )
    seen: list[int] = []
    original = csv_import.validate_rows

    def watching(*args: Any) -> Any:
        progress = args[3]

        def counting(n: int) -> None:
            seen.append(n)
            progress(n)

        return original(args[0], args[1], args[2], counting)

    saved = csv_import.validate_rows
    # Monkeypatching a module function with a spy of another signature.
    csv_import.validate_rows = watching  # type: ignore[assignment]
    try:
        csv_import.import_run(import_id=job.pk)
    finally:
        csv_import.validate_rows = saved

    assert seen == [500, 1000]
    job.refresh_from_db()
    assert (job.state, job.imported) == ("done", 1200)


@pytest.mark.parametrize(("who", "status"), [("viewer", 403), ("outsider", 404)])
def test_the_import_page_needs_an_operator(
    plant: dict[str, Any], who: str, status: int
) -> None:
    client = logged_in(plant["users"][who], plant["product"])
    job = DeviceImport.objects.create(product=plant["product"], broker=plant["broker"])
    if who == "viewer":
        assert client.get("/devices/import/").status_code == status
    assert client.get(f"/devices/import/{job.pk}/").status_code == status
