"""Products (tenants), memberships with roles, and the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from mqttadmin.roles import Role, roles_at_least

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    AnyUser = User | AnonymousUser


class ProductScopedQuerySet(models.QuerySet):
    """A queryset that can be narrowed to what a user may see in their products.

    Subclasses name the path from the model to its product in `product_path`
    ("" for Product itself). Every queryset a user reaches goes through `for_user`.
    """

    product_path: str = "product"

    def for_user(self, user: AnyUser, role: Role | str = Role.VIEWER) -> Self:
        """Objects in products where `user` holds at least `role`."""
        if not getattr(user, "is_authenticated", False) or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self.all()
        prefix = f"{self.product_path}__" if self.product_path else ""
        # One filter() call so both conditions apply to the same membership row.
        return self.filter(
            **{
                f"{prefix}memberships__user": user,
                f"{prefix}memberships__role__in": roles_at_least(role),
            }
        )


class ProductQuerySet(ProductScopedQuerySet):
    product_path = ""


class Product(models.Model):
    """A tenant: brokers, devices and members belong to exactly one product."""

    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def role_of(self, user: AnyUser) -> Role | None:
        """The user's role here; superusers act as admins everywhere."""
        if not getattr(user, "is_authenticated", False) or not user.is_active:
            return None
        if user.is_superuser:
            return Role.ADMIN
        membership = self.memberships.filter(user=user).only("role").first()
        return Role(membership.role) if membership else None

    def allows(self, user: AnyUser, minimum: Role | str) -> bool:
        role = self.role_of(user)
        return role is not None and role.allows(minimum)


class MembershipQuerySet(ProductScopedQuerySet):
    pass


class Membership(models.Model):
    """A user's role in one product."""

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(
        _("role"), max_length=16, choices=Role.choices, default=Role.VIEWER
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["product", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "user"], name="membership_unique_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.product} as {self.role}"


class AuditSource(models.TextChoices):
    PAGE = "page", _("Page")
    API = "api", _("API")
    ADMIN = "admin", _("Django admin")
    SYSTEM = "system", _("System")


class AuditEntryQuerySet(ProductScopedQuerySet):
    def for_user(self, user: AnyUser, role: Role | str = Role.ADMIN) -> Self:
        """Audit entries are for product admins; product-less entries for superusers."""
        return super().for_user(user, role)


class AuditEntry(models.Model):
    """One change made through a page, the API, the admin or the system.

    `changes` maps a field to `[old, new]`; secret fields are recorded as changed
    with both values masked.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    product = models.ForeignKey(
        Product,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_entries",
    )
    source = models.CharField(
        max_length=10, choices=AuditSource.choices, default=AuditSource.SYSTEM
    )
    action = models.CharField(max_length=60, db_index=True)
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=60, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action}"

    @property
    def summary(self) -> dict[str, Any]:
        return {"action": self.action, "target": self.target_repr}


class UserSession(models.Model):
    """A logged-in browser session of a user, so they can see and end it.

    Written on login; `session_key` names the row of Django's session store.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    session_key = models.CharField(max_length=40, unique=True)
    user_agent = models.CharField(max_length=300, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_seen", "-id"]

    def __str__(self) -> str:
        return f"{self.user} from {self.ip_address or '?'}"


class PasswordChangeRequired(models.Model):
    """The user logs in with a password someone else chose (a product admin's
    one-time password): every page sends them to choose their own until they do."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} must change their password"


class UserPreferences(models.Model):
    """How one user wants the portal shown; a row exists once they chose something.

    An empty time zone follows the browser (the `tz` cookie, `mqttadmin.timezones`).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="portal_preferences",
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("An IANA zone name; empty follows the browser."),
    )

    class Meta:
        verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"{self.user}: {self.time_zone or 'browser time zone'}"
