"""What every backend works with: the desired state, a change to apply, drift found.

The desired state is read from the database in one go and is plain data from then
on, so backends never touch the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django.db.models import Prefetch

if TYPE_CHECKING:
    from acl.models import ManagedBroker
    from brokers.models import Broker


class ApplyError(Exception):
    """The broker did not take the desired state; the message says why, verbatim
    where the broker gave a reason."""


@dataclass(frozen=True)
class RuleSpec:
    topic: str
    access: str
    priority: int = 0

    @property
    def is_pattern(self) -> bool:
        return "%u" in self.topic or "%c" in self.topic


@dataclass(frozen=True)
class RoleSpec:
    name: str
    rules: tuple[RuleSpec, ...] = ()


@dataclass(frozen=True)
class UserSpec:
    username: str
    password_hash: str = ""
    enabled: bool = True
    client_id: str = ""
    roles: tuple[str, ...] = ()
    password_pending: bool = False


@dataclass(frozen=True)
class DesiredState:
    """The users and roles the portal wants on one broker."""

    users: tuple[UserSpec, ...] = ()
    roles: tuple[RoleSpec, ...] = ()

    @classmethod
    def of_broker(cls, broker: Broker) -> DesiredState:
        from acl.models import MqttRole, MqttRule, MqttUser

        roles = MqttRole.objects.filter(broker=broker).prefetch_related(
            Prefetch("rules", queryset=MqttRule.objects.order_by("-priority", "id"))
        )
        users = MqttUser.objects.filter(broker=broker).prefetch_related("roles")
        return cls(
            users=tuple(
                UserSpec(
                    username=user.username,
                    password_hash=user.password_hash,
                    enabled=user.enabled,
                    client_id=user.client_id,
                    roles=tuple(sorted(role.name for role in user.roles.all())),
                    password_pending=user.password_pending,
                )
                for user in users.order_by("username")
            ),
            roles=tuple(
                RoleSpec(
                    name=role.name,
                    rules=tuple(
                        RuleSpec(rule.topic, rule.access, rule.priority)
                        for rule in role.rules.all()
                    ),
                )
                for role in roles.order_by("name")
            ),
        )

    def user(self, username: str) -> UserSpec | None:
        return next((u for u in self.users if u.username == username), None)

    def role(self, name: str) -> RoleSpec | None:
        return next((r for r in self.roles if r.name == name), None)


@dataclass(frozen=True)
class Change:
    """One change made in the portal, for a backend that applies changes one by one.

    `password` is the plain password just set (Dynamic Security needs it once); it
    is never stored. `old_name` is a renamed role's previous name.
    """

    kind: str  # "user" | "role"
    name: str
    deleted: bool = False
    old_name: str = ""
    password: str | None = field(default=None, repr=False)


@dataclass
class Drift:
    """How the broker differs from the portal, as found before a sync applied."""

    unknown_users: list[str] = field(default_factory=list)
    unknown_roles: list[str] = field(default_factory=list)
    missing_users: list[str] = field(default_factory=list)
    missing_roles: list[str] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(
            self.unknown_users
            or self.unknown_roles
            or self.missing_users
            or self.missing_roles
            or self.differences
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "unknown_users": self.unknown_users,
            "unknown_roles": self.unknown_roles,
            "missing_users": self.missing_users,
            "missing_roles": self.missing_roles,
            "differences": self.differences,
        }


@dataclass
class SyncOutcome:
    """What a full sync found and did; `errors` are the objects it could not fix."""

    drift: Drift
    pruned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Users the broker holds without their current password (Dynamic Security
    # takes plain passwords only, and the portal keeps none).
    passwordless: list[str] = field(default_factory=list)


class Backend(Protocol):
    """Applies the desired state to one broker."""

    managed: ManagedBroker

    def apply_change(self, state: DesiredState, change: Change) -> list[str]:
        """Bring the broker in line after one change; raises ApplyError. Returns the
        users the broker now holds without their password."""

    def sync(self, state: DesiredState, *, prune: bool = False) -> SyncOutcome:
        """Find drift, then apply everything; raises ApplyError when the broker
        cannot be reached at all."""

    def export(self, state: DesiredState) -> dict[str, Any]:
        """What the broker gets, with passwords hashed."""
