"""Abuse of accounts and the Django admin: a staff user reaches only the products
they administer, host settings and host actions are for superusers, tokens are
stored hashed and die with the password, management settings are for admins."""

from __future__ import annotations

import importlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib import admin
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from acl.models import ManagedBroker
from brokers.models import Broker
from mqttadmin.admin_base import ProductScopedMixin
from mqttadmin.models import AuditEntry
from tests.clients import htmx_swap
from tests.factories import PASSWORD, make_product, make_user

pytestmark = pytest.mark.django_db


def shows(marker: str, html: str) -> bool:
    """True when a tenant's marker shows as a word (not inside a CSRF token)."""
    return re.search(rf"(?<![a-z0-9]){marker}(?![a-z0-9])", html.lower()) is not None


def staff_with_every_permission(user: Any) -> Client:
    """`user` as a staff member holding every model permission there is: the most
    a non-superuser can be given in the admin."""
    user.is_staff = True
    user.save()
    user.user_permissions.set(Permission.objects.all())
    client = Client()
    client.force_login(user)
    return client


def changelist_url(model: type[Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def managed_form(managed: ManagedBroker, **changes: Any) -> dict[str, Any]:
    data = {
        "broker": managed.broker_id,
        "management": managed.management,
        "management_username": managed.management_username,
        "management_password": "",
        "reload_method": managed.reload_method,
        "password_file": managed.password_file,
        "acl_file": managed.acl_file,
        "pid_file": managed.pid_file,
        "reload_command": managed.reload_command,
        "restart_command": managed.restart_command,
    }
    data.update(changes)
    return data


# --- The Django admin: products -----------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
def test_staff_never_see_another_products_objects_in_any_admin_list(
    seeded: dict, role: str
) -> None:
    client = staff_with_every_permission(seeded["users"][role])
    scoped = [
        model
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, ProductScopedMixin)
    ]
    assert len(scoped) >= 10
    for model in scoped:
        page = client.get(changelist_url(model))
        # Product admins get the list of their own rows; members below admin and
        # other products get nothing at all.
        assert page.status_code in (200, 403), model
        html = page.content.decode()
        assert not shows("qxb", html), model
        if role != "admin":
            assert page.status_code == 403 or not shows("qxa", html), model


def test_every_other_admin_is_for_superusers_only(seeded: dict) -> None:
    client = staff_with_every_permission(seeded["users"]["admin"])
    others = [
        model
        for model, model_admin in admin.site._registry.items()
        if not isinstance(model_admin, ProductScopedMixin)
    ]
    names = {model._meta.label for model in others}
    assert {"auth.User", "auth.Group", "django_celery_beat.PeriodicTask"} <= names
    for model in others:
        assert client.get(changelist_url(model)).status_code == 403, model
        add = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
        assert client.get(add).status_code == 403, model
    root = Client()
    root.force_login(seeded["users"]["superuser"])
    assert root.get(changelist_url(others[0])).status_code == 200


def test_staff_cannot_make_themselves_superuser(seeded: dict) -> None:
    alice = seeded["users"]["admin"]
    client = staff_with_every_permission(alice)
    url = reverse("admin:auth_user_change", args=[alice.pk])
    answer = client.post(
        url,
        {
            "username": "alice",
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert answer.status_code == 403
    alice.refresh_from_db()
    assert not alice.is_superuser


def test_staff_cannot_open_or_change_another_products_broker(seeded: dict) -> None:
    client = staff_with_every_permission(seeded["users"]["admin"])
    theirs: Broker = seeded["theirs"]["broker"]
    url = reverse("admin:brokers_broker_change", args=[theirs.pk])
    page = client.get(url)
    assert page.status_code == 302  # "does not exist": back to the admin index
    client.post(url, {"name": "hijacked", "host": "evil.example", "port": 1883})
    client.post(
        reverse("admin:brokers_broker_delete", args=[theirs.pk]), {"post": "yes"}
    )
    theirs.refresh_from_db()
    assert theirs.name == "qxb broker" and theirs.host == "127.0.0.1"


def test_staff_cannot_move_a_broker_into_a_product_they_do_not_administer(
    seeded: dict,
) -> None:
    client = staff_with_every_permission(seeded["users"]["admin"])
    mine: Broker = seeded["mine"]["broker"]
    other = seeded["theirs"]["product"]
    url = reverse("admin:brokers_broker_change", args=[mine.pk])
    form = client.get(url).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name in form.fields
    }
    data.update(
        {
            "product": other.pk,
            "fallback_hosts": "[]",
            "subscriptions-TOTAL_FORMS": "0",
            "subscriptions-INITIAL_FORMS": "0",
        }
    )
    answer = client.post(url, data)
    assert answer.status_code == 200
    assert "product" in answer.context["adminform"].form.errors
    mine.refresh_from_db()
    assert mine.product == seeded["mine"]["product"]


def test_staff_cannot_add_objects_to_another_product(seeded: dict) -> None:
    client = staff_with_every_permission(seeded["users"]["admin"])
    answer = client.post(
        reverse("admin:brokers_subscription_add"),
        {
            "broker": seeded["theirs"]["broker"].pk,
            "name": "spy",
            "topic_filter": "#",
            "qos": 0,
            "actions": "[]",
        },
    )
    assert answer.status_code == 200
    assert "broker" in answer.context["adminform"].form.errors
    assert not seeded["theirs"]["broker"].subscriptions.filter(name="spy").exists()


def test_product_admin_staff_cannot_set_host_commands_in_the_admin(
    seeded: dict,
) -> None:
    client = staff_with_every_permission(seeded["users"]["admin"])
    managed = ManagedBroker.objects.get(broker=seeded["mine"]["broker"])
    url = reverse("admin:acl_managedbroker_change", args=[managed.pk])
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert not set(ManagedBroker.HOST_FIELDS) & set(form.fields)
    answer = client.post(
        url,
        managed_form(
            managed,
            reload_command="touch /tmp/qxa-pwned",
            restart_command="sh -c id",
            pid_file="/etc/passwd",
            password_file="/etc/cron.d/qxa",
        ),
    )
    assert answer.status_code == 302
    after = ManagedBroker.objects.get(pk=managed.pk)
    for name in ManagedBroker.HOST_FIELDS:
        assert getattr(after, name) == getattr(managed, name), name


def test_a_superuser_still_sets_host_commands_in_the_admin(seeded: dict) -> None:
    client = Client()
    client.force_login(seeded["users"]["superuser"])
    managed = ManagedBroker.objects.get(broker=seeded["mine"]["broker"])
    url = reverse("admin:acl_managedbroker_change", args=[managed.pk])
    answer = client.post(url, managed_form(managed, reload_command="/bin/true"))
    assert answer.status_code == 302
    assert ManagedBroker.objects.get(pk=managed.pk).reload_command == "/bin/true"


def test_staff_cannot_run_the_sync_action(seeded: dict, tmp_path: Path) -> None:
    client = staff_with_every_permission(seeded["users"]["admin"])
    managed = ManagedBroker.objects.get(broker=seeded["mine"]["broker"])
    page = client.get(reverse("admin:acl_managedbroker_changelist"))
    assert "sync_selected" not in page.content.decode()
    client.post(
        reverse("admin:acl_managedbroker_changelist"),
        {"action": "sync_selected", "_selected_action": [managed.pk]},
    )
    after = ManagedBroker.objects.get(pk=managed.pk)
    assert after.last_sync_at is None
    assert not Path(managed.password_file).exists()
    assert not Path(managed.acl_file).exists()


# --- API tokens: stored hashed, revoked with the password ---------------------------


def issue_token(username: str, password: str = PASSWORD) -> str:
    answer = APIClient().post(
        "/api/v1/auth/token/",
        {"username": username, "password": password},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    return answer.json()["token"]


def token_works(token: str) -> bool:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    status = api.get("/api/v1/products/").status_code
    assert status in (200, 401)
    return status == 200


def database_holds(text: str) -> bool:
    """True when any text column of any table holds `text`."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            description = connection.introspection.get_table_description(cursor, table)
            for column in description:
                if "char" not in column.type_code.__str__().lower() and (
                    connection.vendor == "postgresql"
                ):
                    continue
                name = connection.ops.quote_name(column.name)
                cursor.execute(
                    f"SELECT 1 FROM {connection.ops.quote_name(table)} "  # noqa: S608
                    f"WHERE CAST({name} AS TEXT) LIKE %s",
                    [f"%{text}%"],
                )
                if cursor.fetchone():
                    return True
    return False


def test_tokens_are_stored_as_digests_only() -> None:
    user = make_user("bot")
    token = issue_token("bot")
    assert token_works(token)
    row = AuthToken.objects.get(user=user)
    assert row.digest != token and len(row.digest) == 128
    assert not database_holds(token)
    # Shown once: asking again issues another token, the first keeps working.
    second = issue_token("bot")
    assert second != token and token_works(token) and token_works(second)


def test_create_service_account_prints_the_token_once_and_stores_a_digest() -> None:
    product = make_product("Qxa Plant")
    out = io.StringIO()
    call_command("create_service_account", product.slug, "svc-bot", stdout=out)
    token = out.getvalue().strip()
    assert token_works(token)
    assert not database_holds(token)


def test_a_password_reset_in_the_admin_revokes_the_users_tokens(seeded: dict) -> None:
    victor = seeded["users"]["viewer"]
    token = issue_token("victor")
    root = Client()
    root.force_login(seeded["users"]["superuser"])
    answer = root.post(
        reverse("admin:auth_user_password_change", args=[victor.pk]),
        {"password1": "An0ther-Secret-pw", "password2": "An0ther-Secret-pw"},
    )
    assert answer.status_code == 302, answer.content.decode()[-1500:]
    assert not token_works(token)
    assert not AuthToken.objects.filter(user=victor).exists()
    assert AuditEntry.objects.filter(action="auth.token_revoke", actor=victor).exists()


def test_changing_the_password_with_a_form_revokes_tokens() -> None:
    user = make_user("bot")
    token = issue_token("bot")
    form = PasswordChangeForm(
        user,
        {
            "old_password": PASSWORD,
            "new_password1": "An0ther-Secret-pw",
            "new_password2": "An0ther-Secret-pw",
        },
    )
    assert form.is_valid(), form.errors
    form.save()
    assert not token_works(token)


def test_the_changepassword_command_revokes_tokens(monkeypatch: Any) -> None:
    from django.contrib.auth.management.commands import changepassword

    make_user("bot")
    token = issue_token("bot")
    monkeypatch.setattr(
        changepassword.Command, "_get_pass", lambda self, prompt="": "An0ther-pw-9"
    )
    call_command("changepassword", "bot", stdout=io.StringIO())
    assert not token_works(token)
    # The new password gives a new token that works.
    assert token_works(issue_token("bot", "An0ther-pw-9"))


def test_deactivating_a_user_revokes_tokens_for_good(seeded: dict) -> None:
    victor = seeded["users"]["viewer"]
    token = issue_token("victor")
    victor.is_active = False
    victor.save()
    victor.is_active = True
    victor.save()
    assert not token_works(token)


def test_logging_in_or_saving_other_fields_keeps_tokens() -> None:
    user = make_user("bot")
    token = issue_token("bot")
    login = Client().post("/login/", {"username": "bot", "password": PASSWORD})
    assert login.status_code == 302
    user.refresh_from_db()
    user.first_name = "Bot"
    user.save()
    assert token_works(token)


@pytest.mark.django_db(transaction=True)
def test_tokens_issued_before_hashing_keep_working() -> None:
    """The data migration turns clear tokens into digests; clients keep their key."""
    user = make_user("legacy")
    key = "0123456789abcdef0123456789abcdef01234567"  # a DRF authtoken key
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [key, "2025-01-01 00:00:00", user.pk],
        )
    migration = importlib.import_module("mqttadmin.migrations.0004_hash_api_tokens")
    with connection.schema_editor() as editor:
        migration.hash_clear_tokens(django_apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert not database_holds(key)
    assert token_works(key)


# --- Management settings name host files and commands: admins only ----------------


HOST_MARKERS = ("/qxa/passwd", "/qxa/acl", "reload_command", "restart_command")


@pytest.mark.parametrize("role", ["viewer", "operator", "service"])
def test_members_below_admin_never_read_management_settings(
    seeded: dict, role: str
) -> None:
    broker = seeded["mine"]["broker"]
    managed = ManagedBroker.objects.get(broker=broker)
    managed.last_sync_state = "failed"
    managed.last_sync_error = f"cannot write {managed.password_file}: denied"
    managed.save()
    user = seeded["users"][role]
    api = APIClient()
    api.force_authenticate(user)
    answer = api.get(f"/api/v1/brokers/{broker.pk}/management/")
    assert answer.status_code == 403
    # Nothing of them anywhere else in the API the member can read.
    for path in ("mqtt-users/", "mqtt-roles/", "acl/export/", ""):
        text = api.get(f"/api/v1/brokers/{broker.pk}/{path}").content.decode()
        assert not [m for m in HOST_MARKERS if m in text], path
    page = Client()
    page.force_login(user)
    tab = reverse("acl:tab", args=[broker.pk])
    for response in (
        page.get(tab),
        page.get(tab, **htmx_swap("acl-panel")),
        page.get(reverse("brokers:detail", args=[broker.pk]) + "?tab=acl"),
    ):
        text = response.content.decode()
        assert response.status_code == 200
        assert not [m for m in HOST_MARKERS if m in text]
        assert "true" not in re.findall(r"<code>([^<]*)</code>", text)
    settings_page = page.get(reverse("acl:management", args=[broker.pk]))
    assert settings_page.status_code == 403
    assert "/qxa/" not in settings_page.content.decode()


def test_product_admins_read_management_settings(seeded: dict) -> None:
    broker = seeded["mine"]["broker"]
    api = APIClient()
    api.force_authenticate(seeded["users"]["admin"])
    answer = api.get(f"/api/v1/brokers/{broker.pk}/management/")
    assert answer.status_code == 200
    assert answer.json()["password_file"].endswith("/qxa/passwd")
