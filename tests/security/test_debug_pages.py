"""With the embedded defaults (no environment at all) DEBUG is off: a request that
fails gets the portal's plain 500 page, never Django's technical page with its
traceback and settings; static files are still served and a key is generated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter with only the embedded defaults. The failing view is added
# beside the portal's own routes; everything else is as `make run` has it.
PROBE = """
import json, os, sys, types
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "mqttadmin.settings"
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import include, path

def failing_view(request):
    raise RuntimeError("qx-internal-detail: database password is hunter2")

urls = types.ModuleType("probe_urls")
urls.urlpatterns = [
    path("qx-fails/", failing_view),
    path("", include("mqttadmin.urls")),
]
sys.modules["probe_urls"] = urls
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
user = get_user_model().objects.create_user("victor", password="x-Long-pass-1")
client = Client(raise_request_exception=False)
client.force_login(user)
with override_settings(ROOT_URLCONF="probe_urls", ALLOWED_HOSTS=["testserver"]):
    failed = client.get("/qx-fails/")
    css = client.get("/static/css/app.css")
print(json.dumps({
    "debug": settings.DEBUG,
    "status": failed.status_code,
    "body": failed.content.decode(),
    "css": css.status_code,
    "key_file": (settings.VAR_DIR / "secret_key").exists(),
}))
"""


def test_a_failing_request_never_shows_a_traceback_with_embedded_defaults(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "MQTTADMIN_VAR_DIR": str(tmp_path / "var"),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["debug"] is False
    assert found["status"] == 500
    body = found["body"]
    assert "Something went wrong" in body
    for leak in (
        "Traceback",
        "qx-internal-detail",
        "hunter2",
        "SECRET_KEY",
        "RuntimeError",
    ):
        assert leak not in body, leak
    assert found["css"] == 200  # whitenoise serves static files with DEBUG off
    assert found["key_file"]  # embedded mode generates its secret key


def test_debug_pages_only_when_asked_for(tmp_path: Path) -> None:
    probe = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='mqttadmin.settings';"
        " django.setup(); from django.conf import settings; print(settings.DEBUG)"
    )
    base = {"PATH": os.environ["PATH"], "MQTTADMIN_VAR_DIR": str(tmp_path / "var")}
    for env, expected in (({}, "False"), ({"DEBUG": "1"}, "True")):
        done = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == expected
