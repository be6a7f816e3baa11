"""Writes on products and memberships; each one lands in the audit log."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _

from mqttadmin.accounts import invite_path
from mqttadmin.audit import audit_record, diff, snapshot
from mqttadmin.models import Membership, PasswordChangeRequired, Product
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


# How a user created by a product admin gets in.
ACCESS_PASSWORD = "password"  # noqa: S105 (a choice's name); a one-time password, changed at first login
ACCESS_INVITE = "invite"  # a link where they choose their password


@dataclass(frozen=True)
class NewMember:
    """What the admin is shown once: the one-time password or the invite path."""

    membership: Membership
    password: str = ""
    invite_path: str = ""


@transaction.atomic
def member_create(
    *,
    actor: Any,
    product: Product,
    username: str,
    role: str,
    access: str,
    email: str = "",
) -> NewMember:
    """Create a user (never staff) and make them a member of `product`.

    Nothing that lets them in is stored in the clear: the one-time password is
    hashed at once, the invite token is derived from the user's row."""
    if access not in (ACCESS_PASSWORD, ACCESS_INVITE):
        raise ValidationError(
            {
                "access": _("Access must be one of: %s.")
                % ", ".join((ACCESS_PASSWORD, ACCESS_INVITE))
            }
        )
    if role == Role.SERVICE:
        raise ValidationError(
            {
                "role": _(
                    "The service role is for token-only accounts "
                    "(manage.py create_service_account), not for people."
                )
            }
        )
    _check_role(role)
    user_model = get_user_model()
    # Case-insensitively: "Ada" and "ada" side by side would confuse everyone.
    if user_model.objects.filter(username__iexact=username).exists():
        raise ValidationError(
            {"username": _("The username “%(name)s” is taken.") % {"name": username}}
        )
    user = user_model(username=username, email=email, is_staff=False)
    password = ""
    if access == ACCESS_PASSWORD:
        password = secrets.token_urlsafe(12)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    if access == ACCESS_PASSWORD:
        PasswordChangeRequired.objects.create(user=user)
    membership = Membership.objects.create(product=product, user=user, role=role)
    audit_record(
        actor=actor,
        action="user.create",
        target=user,
        product=product,
        changes={
            "username": [None, username],
            "email": [None, email],
            "access": [None, access],
        },
    )
    audit_record(
        actor=actor,
        action="membership.add",
        target=membership,
        product=product,
        changes={"user": [None, username], "role": [None, role]},
    )
    return NewMember(
        membership=membership,
        password=password,
        invite_path=invite_path(user) if access == ACCESS_INVITE else "",
    )
