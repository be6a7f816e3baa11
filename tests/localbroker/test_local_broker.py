"""`serve`'s local Mosquitto: the Demo product's managed (dynsec) broker, started for
real in a temporary directory, supervised, restarted through the lifecycle API, and
never left running behind the portal."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from acl.lifecycle import LifecycleUnavailable
from acl.models import ManagedBroker
from acl.services import broker_lifecycle
from brokers.models import Broker
from localbroker import services as local_broker
from localbroker import supervisor
from localbroker.services import LocalBroker
from localbroker.supervisor import find_dynsec_plugin, find_mosquitto, port_accepts
from mqttadmin.embedded import EmbeddedOptions
from mqttadmin.management.commands.serve import Command as ServeCommand
from mqttadmin.models import Product
from tests.acl.conftest import connack
from tests.clients import as_user
from tests.factories import make_superuser
from tests.runtime_support import wait_until
from tests.services import missing

pytestmark = pytest.mark.mosquitto


def binaries() -> tuple[str, str]:
    binary = find_mosquitto()
    if binary is None:
        missing("mosquitto is not installed (apt-get install mosquitto)")
    plugin = find_dynsec_plugin(binary=binary)
    if plugin is None:
        missing("the Mosquitto Dynamic Security plugin is not installed")
    return binary, plugin


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if text.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def start_local(tmp_path: Path, db: Any) -> Iterator[Any]:
    """Start LocalBroker runs in tmp_path (never the real var/), stop them after."""
    binary, plugin = binaries()
    started: list[LocalBroker] = []

    def start(directory: Path | None = None) -> LocalBroker:
        local = LocalBroker(
            directory=directory or tmp_path / "mosquitto", binary=binary, plugin=plugin
        )
        started.append(local)
        return local.start()

    yield start
    for local in started:
        local.stop()


def test_it_registers_the_demo_products_managed_broker(start_local: Any) -> None:
    local = start_local()
    broker = Broker.objects.get(pk=local.broker_id)
    assert (broker.product.slug, broker.product.name) == ("demo", "Demo")
    assert (broker.name, broker.host, broker.port) == (
        "Local Mosquitto",
        "127.0.0.1",
        local.port,
    )
    assert broker.enabled and broker.username == local_broker.ADMIN_USERNAME
    assert ManagedBroker.objects.get(broker=broker).management == "dynsec"
    # The admin password is kept encrypted.
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM brokers_broker WHERE id = %s", [broker.pk])
        (stored,) = cursor.fetchone()
    assert stored and broker.password and broker.password not in stored
    assert connack(local.port, broker.username, broker.password) == 0
    assert connack(local.port, broker.username, "wrong") != 0
    config = local.files.config.read_text()
    for line in ("log_dest topic", "sys_interval 5", "allow_anonymous false"):
        assert line in config
    assert f"listener {local.port} 127.0.0.1" in config
    assert f"persistence_location {local.files.directory}/" in config


def test_a_second_run_reuses_the_rows_and_moves_off_a_taken_port(
    start_local: Any, tmp_path: Path
) -> None:
    first = start_local()
    broker = Broker.objects.get(pk=first.broker_id)
    password, old_port = broker.password, first.port
    first.stop()
    assert not port_accepts(old_port)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        second = start_local()
    assert second.broker_id == broker.pk and second.port != old_port
    broker.refresh_from_db()
    assert broker.port == second.port and broker.password == password
    assert Product.objects.filter(slug="demo").count() == 1
    assert Broker.objects.filter(name="Local Mosquitto").count() == 1
    assert connack(second.port, broker.username, password) == 0


def test_a_user_created_through_the_api_connects(start_local: Any) -> None:
    local = start_local()
    api = as_user(make_superuser("root"))
    base = f"/api/v1/brokers/{local.broker_id}"
    response = api.post(
        f"{base}/mqtt-roles/",
        {"name": "lab", "rules": [{"topic": "lab/#", "access": "readwrite"}]},
        format="json",
    )
    assert response.status_code == 201, response.content
    response = api.post(
        f"{base}/mqtt-users/",
        {"username": "lab-client", "password": "lab-Secret-1", "roles": ["lab"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert ManagedBroker.objects.get(pk=local.broker_id).last_sync_state == "applied"
    assert connack(local.port, "lab-client", "lab-Secret-1") == 0
    assert connack(local.port, "lab-client", "not-it") != 0


def test_restart_and_reload_through_the_lifecycle_api(start_local: Any) -> None:
    local = start_local()
    api = as_user(make_superuser("root"))
    url = f"/api/v1/brokers/{local.broker_id}/lifecycle/"
    old_pid = local.supervisor.pid
    response = api.post(url, {"action": "restart"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["method"] == "local"
    new_pid = local.supervisor.pid
    assert new_pid and new_pid != old_pid and not pid_alive(old_pid)
    assert port_accepts(local.port)
    broker = Broker.objects.get(pk=local.broker_id)
    assert broker.port == local.port
    assert connack(local.port, broker.username, broker.password) == 0
    response = api.post(url, {"action": "reload"}, format="json")
    assert response.status_code == 200 and response.json()["ok"]
    assert local.supervisor.pid == new_pid and pid_alive(new_pid)


def test_a_killed_mosquitto_is_restarted_by_the_supervisor(start_local: Any) -> None:
    local = start_local()
    old_pid = local.supervisor.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_until(
        lambda: (
            local.supervisor.pid not in (None, old_pid) and port_accepts(local.port)
        ),
        what="the supervisor started mosquitto again",
    )
    broker = Broker.objects.get(pk=local.broker_id)
    assert connack(local.port, broker.username, broker.password) == 0
    assert local.supervisor.restarts == 1


def test_stopping_leaves_no_mosquitto(start_local: Any) -> None:
    local = start_local()
    pids = [local.supervisor.pid, local.supervisor.guard_pid]
    assert processes_mentioning(str(local.files.config))
    local.stop()
    assert not any(pid_alive(pid) for pid in pids)
    assert processes_mentioning(str(local.files.config)) == []
    assert not port_accepts(local.port)
    # Its lifecycle provider went with it.
    with pytest.raises(LifecycleUnavailable):
        broker_lifecycle(actor=None, broker=local.broker, action="restart")


def test_mosquitto_ends_when_the_portal_is_killed(tmp_path: Path) -> None:
    """kill -9 of the portal runs none of its code: the guard sees its pipe close."""
    binary, plugin = binaries()
    directory = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(supervisor.__file__).parent)!r})
        from supervisor import LocalBrokerFiles, Supervisor, pick_port
        files = LocalBrokerFiles(Path({str(directory)!r}))
        files.prepare()
        files.write_dynsec("admin", "pw")
        port = pick_port()
        files.write_config(port=port, plugin={plugin!r})
        supervisor = Supervisor(
            binary={binary!r}, config=files.config, port=port, log=files.log
        )
        supervisor.start()
        print(supervisor.pid, flush=True)
        time.sleep(60)
        """
    )
    portal = subprocess.Popen(
        [sys.executable, "-I", "-c", script], stdout=subprocess.PIPE, text=True
    )
    try:
        assert portal.stdout is not None
        pid = int(portal.stdout.readline())
        assert pid_alive(pid)
        portal.kill()
        portal.wait(5)
        wait_until(lambda: not pid_alive(pid), 10, "mosquitto ended with the portal")
        assert processes_mentioning(str(directory)) == []
    finally:
        if portal.poll() is None:
            portal.kill()
        for pid in processes_mentioning(str(directory)):
            os.kill(pid, signal.SIGKILL)


def test_serve_accepts_the_local_broker_and_demo_switches() -> None:
    parser = ServeCommand().create_parser("manage.py", "serve")
    options = parser.parse_args(["--no-local-broker", "--no-demo", "--port", "9000"])
    assert options.no_local_broker and options.no_demo and options.port == 9000
    defaults = parser.parse_args([])
    assert not defaults.no_local_broker and not defaults.no_demo


def test_without_the_binary_serve_says_how_to_install_it(settings: Any) -> None:
    settings.MQTTADMIN_MOSQUITTO = "/nonexistent/mosquitto"
    out = io.StringIO()
    assert local_broker.start_local_broker(EmbeddedOptions(stdout=out)) is None
    assert "apt-get install mosquitto" in out.getvalue()
    assert "brew install mosquitto" in out.getvalue()
    assert local_broker.start_local_broker(EmbeddedOptions(local_broker=False)) is None


def test_the_plugin_path_comes_from_the_setting_first(tmp_path: Path) -> None:
    plugin = tmp_path / "mosquitto_dynamic_security.so"
    plugin.write_bytes(b"")
    assert find_dynsec_plugin(str(plugin)) == str(plugin)
    assert find_dynsec_plugin(str(tmp_path / "absent.so")) is None
    # Beside the binary's prefix, as a source install or Homebrew lays it out.
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib").mkdir()
    binary = tmp_path / "bin" / "mosquitto"
    binary.write_text("")
    binary.chmod(0o755)
    (tmp_path / "lib" / "mosquitto_dynamic_security.so").write_bytes(b"")
    found = find_dynsec_plugin(binary=str(binary))
    assert found == str(tmp_path / "lib" / "mosquitto_dynamic_security.so")
    assert find_mosquitto(str(binary)) == str(binary)
    assert find_mosquitto(str(tmp_path / "nope")) is None
