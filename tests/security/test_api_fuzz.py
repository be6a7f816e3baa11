"""Schemathesis over the whole API, as the admin of a seeded product: whatever the
request, the answer is never a server error.

Left out, because their bodies choose a host to connect to and a fuzzer would make
them reach addresses outside this machine: POST /api/v1/brokers/test/,
POST /api/v1/brokers/{pk}/test/ and POST /api/v1/products/{pk}/mqtt-config/test/.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from mqttadmin.security import token_issue
from tests.security.routes import Route, object_for

CONNECTS_ANYWHERE = [
    "/api/v1/brokers/test/",
    "/api/v1/brokers/{id}/test/",
    "/api/v1/products/{id}/mqtt-config/test/",
]


# Operations that talk to the product's broker.
TALKS_TO_BROKER = ("publish", "retained", "command", "clients", "reconnect")


def _schema() -> Any:
    raw = SchemaGenerator().get_schema(request=None, public=True)
    document = json.loads(OpenApiJsonRenderer().render(raw))
    # Explicit examples and random generation; the coverage phase's exhaustive
    # boundary cases would take many minutes on two cores.
    config = SchemathesisConfig.from_dict(
        {"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}}
    )
    schema = schemathesis.openapi.from_dict(document, config=config)
    schema.app = WSGIHandler()
    return schema.exclude(path=CONNECTS_ANYWHERE)


schema = _schema()


def seeded_path_parameters(case: Any, tenant: Any, member: Any) -> None:
    """Point path ids at the seeded product's objects, so requests reach the views'
    logic instead of stopping at 404."""
    params = dict(case.path_parameters or {})
    if not params:
        return
    probe = case.operation.path.format(**{name: 1 for name in params})
    match = resolve(probe)
    route_name = ":".join([*match.namespaces, match.url_name or ""]).lstrip(":")
    route = Route(
        name=route_name,
        path=case.operation.path.lstrip("/").replace("{", "<").replace("}", ">"),
        kwargs=tuple(params),
        methods=(),
        is_api=True,
        # Built for this one case: nothing reads its URL pattern.
        pattern=None,  # type: ignore[arg-type]
    )
    for name in params:
        # The schema calls a route's `pk` "id".
        key = object_for(route, "pk" if name == "id" else name)
        if key is not None:
            params[name] = member.pk if key == "member" else tenant[key].pk
    case.path_parameters = params


@pytest.fixture
def keep_test_connection() -> Any:
    """As Django's test client does: a request must not close the test's database
    connection (its transaction holds the seeded world)."""
    from django.core import signals
    from django.db import close_old_connections

    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def no_throttling(settings: Any) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": "100000/minute", "anonymous": None},
    }


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    # CI replays the same examples so a submission is judged on its own changes;
    # developer runs draw new ones and keep finding what is left (the fixed
    # findings are pinned in test_fuzz_findings.py).
    derandomize=os.environ.get("CI") == "true",
)
def test_the_api_never_answers_with_a_server_error(
    case: Any,
    seeded: dict,
    request: Any,
    no_throttling: None,
    keep_test_connection: None,
) -> None:
    admin = seeded["users"]["admin"]
    token = token_issue(user=admin)
    if any(word in case.operation.path for word in TALKS_TO_BROKER):
        # A reachable broker: "broker unreachable" is a deliberate 502.
        broker = seeded["mine"]["broker"]
        broker.port = request.getfixturevalue("mosquitto")().port
        broker.save(update_fields=["port"])
    seeded_path_parameters(case, seeded["mine"], seeded["users"]["viewer"])
    response = case.call(headers={"Authorization": f"Token {token}"})
    case.validate_response(response, checks=[not_a_server_error])
