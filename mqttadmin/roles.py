"""Roles a user holds in a product, ordered from least to most powerful."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    VIEWER = "viewer", _("Viewer")
    OPERATOR = "operator", _("Operator")
    ADMIN = "admin", _("Admin")
    # A machine account of a product's own MQTT service: token only, reads like a
    # viewer, and is the only role that receives broker passwords.
    SERVICE = "service", _("Service account")

    @property
    def rank(self) -> int:
        return ROLE_RANK[self.value]

    def allows(self, minimum: "Role | str") -> bool:
        """True when this role is at least `minimum`."""
        return ROLE_RANK[self.value] >= ROLE_RANK[str(minimum)]


ROLE_RANK: dict[str, int] = {
    Role.SERVICE: 1,
    Role.VIEWER: 1,
    Role.OPERATOR: 2,
    Role.ADMIN: 3,
}


def roles_at_least(minimum: Role | str) -> list[str]:
    """The role values that satisfy `minimum`, for queryset filters."""
    return [role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[str(minimum)]]
