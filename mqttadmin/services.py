"""Writes on products and memberships; each one lands in the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _

from mqttadmin.audit import audit_record, diff, snapshot
from mqttadmin.models import Membership, Product
from mqttadmin.roles import Role

PRODUCT_FIELDS = ("name", "slug", "description")


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "product"
    slug, n = base, 2
    while Product.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def product_create(
    *, actor: Any, name: str, slug: str = "", description: str = ""
) -> Product:
    """Create a product; its creator (when not a superuser) becomes its admin."""
    product = Product(
        name=name, slug=slug or _unique_slug(name), description=description
    )
    product.full_clean()
    product.save()
    if getattr(actor, "is_authenticated", False) and not actor.is_superuser:
        Membership.objects.create(product=product, user=actor, role=Role.ADMIN)
    audit_record(
        actor=actor,
        action="product.create",
        target=product,
        changes=diff({}, snapshot(product, PRODUCT_FIELDS)),
    )
    return product


@transaction.atomic
def product_update(*, actor: Any, product: Product, **fields: Any) -> Product:
    before = snapshot(product, PRODUCT_FIELDS)
    for name, value in fields.items():
        if name not in PRODUCT_FIELDS:
            raise ValueError(f"unknown product field {name!r}")
        setattr(product, name, value)
    product.full_clean()
    product.save()
    changes = diff(before, snapshot(product, PRODUCT_FIELDS))
    if changes:
        audit_record(
            actor=actor, action="product.update", target=product, changes=changes
        )
    return product


@transaction.atomic
def product_delete(*, actor: Any, product: Product) -> None:
    audit_record(
        actor=actor,
        action="product.delete",
        target=product,
        product=None,
        changes={"name": [product.name, None]},
    )
    product.delete()


def _user_by_username(username: str) -> User:
    user_model = get_user_model()
    try:
        return user_model.objects.get(username=username)
    except user_model.DoesNotExist:
        raise ValidationError(
            {"username": _("No user named “%(name)s”.") % {"name": username}}
        ) from None


def _check_role(role: str, user: Any = None) -> None:
    if role not in Role.values:
        raise ValidationError(
            {"role": _("Role must be one of: %s.") % ", ".join(Role.values)}
        )
    # Service accounts receive broker passwords: never give that role to a person.
    if role == Role.SERVICE and user is not None and user.has_usable_password():
        raise ValidationError(
            {
                "role": _(
                    "The service role is for token-only accounts without a password "
                    "(manage.py create_service_account)."
                )
            }
        )


@transaction.atomic
def membership_add(
    *, actor: Any, product: Product, username: str, role: str
) -> Membership:
    """Give a user a role in a product."""
    user = _user_by_username(username)
    _check_role(role, user)
    if Membership.objects.filter(product=product, user=user).exists():
        raise ValidationError(
            {"username": _("%(name)s is already a member.") % {"name": username}}
        )
    membership = Membership.objects.create(product=product, user=user, role=role)
    audit_record(
        actor=actor,
        action="membership.add",
        target=membership,
        product=product,
        changes={"user": [None, username], "role": [None, role]},
    )
    return membership


def _ensure_admin_remains(membership: Membership, new_role: str | None) -> None:
    """A product keeps at least one admin, so nobody locks everyone out."""
    if membership.role != Role.ADMIN or new_role == Role.ADMIN:
        return
    others = Membership.objects.filter(
        product=membership.product, role=Role.ADMIN
    ).exclude(pk=membership.pk)
    if not others.exists():
        raise ValidationError(
            {"role": _("A product needs at least one admin; add another admin first.")}
        )


@transaction.atomic
def membership_change_role(
    *, actor: Any, membership: Membership, role: str
) -> Membership:
    _check_role(role, membership.user)
    _ensure_admin_remains(membership, role)
    old = membership.role
    if old != role:
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            actor=actor,
            action="membership.change_role",
            target=membership,
            product=membership.product,
            changes={"role": [old, role]},
        )
    return membership


@transaction.atomic
def membership_remove(*, actor: Any, membership: Membership) -> None:
    _ensure_admin_remains(membership, None)
    audit_record(
        actor=actor,
        action="membership.remove",
        target=membership,
        product=membership.product,
        changes={"user": [membership.user.get_username(), None]},
    )
    membership.delete()
