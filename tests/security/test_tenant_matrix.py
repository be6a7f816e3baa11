"""Tenant isolation over every route: pages, API and WebSockets.

Routes come from the URL resolver, so a new one is in the matrix as soon as it is
routed; one whose kwargs the matrix cannot fill fails `test_every_route_is_known`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from django.apps import apps
from django.db import models

from tests.clients import as_user, logged_in
from tests.security.routes import (
    CREATE_BODIES,
    CREATE_QUERY_PARAMS,
    WRITE_METHODS,
    Route,
    collection_routes,
    kwargs_for,
    tenant_routes,
    unknown_routes,
)

pytestmark = pytest.mark.django_db

# Rows that requests legitimately touch (sessions, login bookkeeping).
UNWATCHED = {
    "sessions.session",
    "mqttadmin.usersession",
    "axes.accessattempt",
    "axes.accesslog",
    "axes.accessfailurelog",
    "axes.accessattemptexpiration",
}
# Columns a login or a page view updates by design.
VOLATILE = {"last_login"}
# Writes that change nothing shared: choosing a product for one's own session.
HARMLESS_WRITES = {"product-switch"}


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def snapshot(volatile: set[str] = VOLATILE) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the portal owns, to prove a request changed nothing;
    `volatile` names columns left out."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in UNWATCHED or model._meta.proxy:
            continue
        manager: models.Manager = model._base_manager
        fields = [
            f.attname for f in model._meta.concrete_fields if f.name not in volatile
        ]
        # Sorted by content: rows rewritten with new ids compare equal.
        rows[label] = sorted(
            (
                tuple(_plain(v) for v in row)
                for row in manager.order_by("pk").values_list(*fields)
            ),
            key=repr,
        )
    return rows


def changed(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> list[str]:
    return sorted(label for label in before if before[label] != after.get(label))


def call(client: Any, route: Route, method: str, url: str, tenant: Any = None) -> Any:
    if route.is_api:
        body = {}
        if tenant is not None and method == "post" and route.name in CREATE_BODIES:
            body = CREATE_BODIES[route.name](tenant)
        if tenant is not None and route.name in CREATE_QUERY_PARAMS:
            url += CREATE_QUERY_PARAMS[route.name](tenant)
        if route.name == "device-import":
            return client.post(
                url, "device_id,name,type,topic\nx,x,,a/x\n", content_type="text/csv"
            )
        return getattr(client, method)(url, body, format="json")
    return getattr(client, method)(url)


def is_read_page(route: Route, client: Any, url: str) -> bool:
    """A function view that renders the same page for any method (no write)."""
    return not route.is_api and client.get(url).status_code in (200, 302)


def clients(route: Route, user: Any, product: Any) -> Any:
    return as_user(user) if route.is_api else logged_in(user, product)


def test_every_route_is_known() -> None:
    unknown = unknown_routes()
    assert not unknown, (
        "Routes the tenant matrix cannot fill; add them to OBJECT_FOR in "
        "tests/security/routes.py:\n" + "\n".join(unknown)
    )


def test_the_matrix_reaches_real_objects(seeded: dict) -> None:
    """The kwargs point at existing objects: their own admin is never told 404."""
    mine, admin = seeded["mine"], seeded["users"]["admin"]
    missed = []
    for route in tenant_routes():
        if "get" not in route.methods:
            continue
        url = route.url(kwargs_for(route, mine, seeded["users"]["viewer"]))
        status = clients(route, admin, mine.product).get(url).status_code
        if status == 404:
            missed.append(f"{route.name} {url}")
    assert not missed, "\n".join(missed)


def test_a_member_of_another_product_gets_404_everywhere(seeded: dict) -> None:
    """Every method of every object route of product A, as an admin of product B."""
    mine, outsider = seeded["mine"], seeded["users"]["outsider"]
    theirs_product = seeded["theirs"].product
    leaks = []
    before = snapshot()
    for route in tenant_routes():
        url = route.url(kwargs_for(route, mine, seeded["users"]["viewer"]))
        client = clients(route, outsider, theirs_product)
        for method in route.methods:
            status = call(client, route, method, url).status_code
            if status not in (404, 405):
                leaks.append(f"{method.upper()} {url} ({route.name}): {status}")
    assert not leaks, "\n".join(leaks)
    assert changed(before, snapshot()) == []


def test_another_products_objects_cannot_be_named_in_creates(seeded: dict) -> None:
    """Creating in product A, or under A's broker/device, as an admin of product B."""
    mine, outsider = seeded["mine"], seeded["users"]["outsider"]
    accepted = []
    before = snapshot()
    for route in collection_routes():
        if not route.is_api or "post" not in route.methods:
            continue
        if route.name not in CREATE_BODIES and route.name not in CREATE_QUERY_PARAMS:
            continue
        status = call(as_user(outsider), route, "post", route.url(), mine).status_code
        if status not in (400, 403, 404):
            accepted.append(f"POST {route.url()} ({route.name}): {status}")
    assert not accepted, "\n".join(accepted)
    assert changed(before, snapshot()) == []


# The other tenant's marker as a word of its own ("qxa broker", "qxa/temp",
# "Qxa Plant"): inside a random CSRF token or session key it is chance, not a leak.
MARKER = re.compile(rb"(?<![a-z0-9])qxa(?![a-z0-9])", re.IGNORECASE)


def test_lists_never_show_another_products_objects(seeded: dict) -> None:
    outsider = seeded["users"]["outsider"]
    theirs_product = seeded["theirs"].product
    leaks = []
    for route in collection_routes():
        if "get" not in route.methods:
            continue
        response = clients(route, outsider, theirs_product).get(route.url())
        if MARKER.search(response.content):
            leaks.append(f"{route.url()} ({route.name})")
    assert not leaks, "pages showing Qxa Plant's objects to Qxb's admin:\n" + "\n".join(
        leaks
    )


def test_a_viewer_cannot_change_anything(seeded: dict) -> None:
    """Every write method of every product route (objects and collections). A
    function view that renders a read-only page for a POST too is fine as long as
    nothing changed."""
    mine, viewer = seeded["mine"], seeded["users"]["viewer"]
    allowed = []
    for route in tenant_routes() + collection_routes():
        if route.name in HARMLESS_WRITES:
            continue
        url = route.url(kwargs_for(route, mine, viewer))
        client = clients(route, viewer, mine.product)
        for method in route.methods:
            if method not in WRITE_METHODS:
                continue
            before = snapshot()
            status = call(client, route, method, url, mine).status_code
            touched = changed(before, snapshot())
            if touched or (
                status not in (403, 404, 405) and not is_read_page(route, client, url)
            ):
                allowed.append(
                    f"{method.upper()} {url} ({route.name}): {status}, "
                    f"changed {touched}"
                )
    assert not allowed, "\n".join(allowed)


def websocket_routes() -> list[Any]:
    from mqttadmin.routing import websocket_urlpatterns

    return list(websocket_urlpatterns)


async def _open(path: str, client: Any) -> tuple[int | str | None, list[str]]:
    """Connect through the real ASGI stack with `client`'s session cookie: the close
    code the server sent (None if it kept the socket open) and the frames before."""
    from channels.testing import WebsocketCommunicator
    from django.conf import settings

    from mqttadmin.asgi import application

    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    communicator = WebsocketCommunicator(
        application,
        path,
        headers=[
            (b"host", b"testserver"),
            (b"origin", b"http://testserver"),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
        ],
    )
    connected, code = await communicator.connect(timeout=5)
    if not connected:
        return code, []
    frames: list[str] = []
    deadline = asyncio.get_running_loop().time() + 1.5
    while asyncio.get_running_loop().time() < deadline:
        if await communicator.receive_nothing(timeout=0.05):
            continue
        output = await communicator.receive_output(timeout=1)
        if output["type"] == "websocket.close":
            return output.get("code"), frames
        frames.append(str(output.get("text") or output.get("bytes") or ""))
    await communicator.disconnect()
    return None, frames


def _ws_path(pattern: Any, tenant: Any) -> tuple[str, bool]:
    """The pattern's path for `tenant`'s objects, and whether it names an object."""
    kwargs = tuple(pattern.pattern.regex.groupindex)
    route = Route(
        name=pattern.name or str(pattern.pattern),
        path=str(pattern.pattern),
        kwargs=kwargs,
        methods=("get",),
        is_api=False,
        pattern=pattern,
    )
    values = {}
    for kwarg in kwargs:
        # Generic: a socket names a broker unless its kwarg says device or product.
        key = (
            "device"
            if "device" in kwarg
            else "product"
            if "product" in kwarg
            else "broker"
        )
        values[kwarg] = tenant[key].pk
    return "/" + route.url(values).lstrip("/"), bool(kwargs)


@pytest.mark.django_db(transaction=True)
def test_websockets_close_4403_for_another_product(seeded: dict) -> None:
    patterns = websocket_routes()
    if not patterns:
        pytest.skip("no WebSocket routes in mqttadmin.routing yet")
    mine = seeded["mine"]
    outsider = logged_in(seeded["users"]["outsider"], seeded["theirs"].product)
    viewer = logged_in(seeded["users"]["viewer"], mine.product)
    problems = []
    for pattern in patterns:
        path, names_object = _ws_path(pattern, mine)
        code, frames = asyncio.run(_open(path, outsider))
        if names_object and code != 4403:
            problems.append(f"{path}: another product's admin got close code {code}")
        if any("qxa" in frame.lower() for frame in frames):
            problems.append(f"{path}: another product's admin saw Qxa objects")
        # The control: the product's own viewer is let in, so 4403 above means
        # "not yours", not "broken socket".
        code, _frames = asyncio.run(_open(path, viewer))
        if code is not None:
            problems.append(f"{path}: the product's viewer got close code {code}")
    assert not problems, "\n".join(problems)
