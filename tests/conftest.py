"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.factories import make_product, make_superuser, make_user
from tests.runtime_support import runtime_starter, uncommitted_sqlite_reads
from tests.services import MosquittoProcess, missing

# The outbound policy blocks loopback by default; the suite's webhook sink
# (tests/http_sink.py) listens there. Opened for the worker and daphne processes
# the fault tests start (they read the environment) and for this process, whose
# settings pytest-django loaded before this file. tests/security/
# test_outbound_policy.py sets it back to empty to prove the default blocks.
os.environ.setdefault("MQTTADMIN_OUTBOUND_ALLOW", "127.0.0.1,::1")


def _allow_loopback_webhooks() -> None:
    from django.conf import settings

    if not settings.MQTTADMIN_OUTBOUND_ALLOW:
        settings.MQTTADMIN_OUTBOUND_ALLOW = [
            entry.strip()
            for entry in os.environ["MQTTADMIN_OUTBOUND_ALLOW"].split(",")
            if entry.strip()
        ]


_allow_loopback_webhooks()


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Each test starts with an empty cache: cached reads (tiles' sparklines, the
    overview's history) are keyed by primary keys the next test's rows reuse."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def world(db: Any) -> dict[str, Any]:
    """Two products and one user per role, for the role matrix."""
    users = {
        "superuser": make_superuser("root"),
        "admin": make_user("alice"),
        "operator": make_user("oscar"),
        "viewer": make_user("victor"),
        "outsider": make_user("olga"),
    }
    product = make_product(
        "Plant",
        admin=users["admin"],
        operator=users["operator"],
        viewer=users["viewer"],
    )
    other = make_product("Other", admin=users["outsider"])
    return {"users": users, "product": product, "other": other}


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Any]:
    """A factory of Mosquitto processes owned by the test, stopped afterwards."""
    started: list[MosquittoProcess] = []

    def start(extra_config: str = "", name: str = "broker") -> MosquittoProcess:
        process = MosquittoProcess(tmp_path / f"{name}{len(started)}", extra_config)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        missing("REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        missing(f"Redis at {url} does not answer: {exc}")
    return url


def pytest_report_header(config: Any) -> list[str]:
    from django.conf import settings

    return [
        f"database: {settings.DATABASES['default']['ENGINE']}",
        f"redis: {os.environ.get('REDIS_URL') or 'none'}; "
        f"require services: {os.environ.get('MQTTADMIN_REQUIRE_SERVICES', '0')}",
    ]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2 at full strength costs seconds per test user; the hasher is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def http_sink() -> Iterator[Any]:
    from tests.http_sink import start_sink

    sink = start_sink()
    yield sink
    sink.stop()


@pytest.fixture
def sqlite_readers_do_not_wait(transactional_db: Any) -> Iterator[None]:
    """Tests that poll the database while the runtime writes (see
    tests/runtime_support.py)."""
    yield from uncommitted_sqlite_reads()


@pytest.fixture
def start_runtime(sqlite_readers_do_not_wait: Any) -> Iterator[Any]:
    """`start_runtime(owner="...", **options)` starts an in-process runtime."""
    yield from runtime_starter()


@pytest.fixture
def foreign_broker(tmp_path: Path) -> Iterator[Any]:
    """A factory of non-Mosquitto brokers owned by the test (tests/foreign_brokers.py):
    `foreign_broker("nats")`, or `foreign_broker("aedes", tls=tls_material)` for one
    with a TLS listener too; all are stopped afterwards."""
    from tests.foreign_brokers import FOREIGN_BROKERS, ForeignBrokerProcess

    started: list[ForeignBrokerProcess] = []

    def start(kind: str, tls: Any = None) -> ForeignBrokerProcess:
        files = {"tls_cert": tls.server_cert, "tls_key": tls.server_key} if tls else {}
        process = FOREIGN_BROKERS[kind](tmp_path / f"{kind}{len(started)}", **files)
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()
