"""Abuse of accounts and the Django admin: a staff user reaches only the products
they administer, host settings and host actions are for superusers, tokens are
stored hashed and die with the password, management settings are for admins."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from acl.models import ManagedBroker
from brokers.models import Broker
from mqttadmin.admin_base import ProductScopedMixin

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


def changelist_url(model: type) -> str:
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
