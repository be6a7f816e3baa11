"""The kinds of subscription actions: one registry, filled by the apps that own them.

A subscription stores its actions as a list of dicts with a `type`; what a type
means lives above brokers. Each app registers its kinds from `AppConfig.ready()`
(`register_action_kind(ActionKind(...))`), as healthchecks lists its integrations
in one TRANSPORTS dict: the actions app registers webhook, republish, alert and
email; devices registers telemetry. Brokers reads the registry to validate actions
when a subscription is saved (`validate_actions`), to fill the action editor
(`ActionKind.fields`, `editor_choices`) and to dry-run them (`dry_run`); the
actions app's worker reads it to execute them (`ActionKind.execute`).

Order of registration is the order the editor and error messages list the kinds.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from mqttadmin.lib.payloads import parse_json

if TYPE_CHECKING:
    from brokers.client import OutgoingMessage

MAX_ACTIONS = 20


class ActionError(Exception):
    """An action failed; the message is kept as the subscription's last error."""


@dataclass(frozen=True)
class ActionCall:
    """One action of one message, as its executor gets it: the plan rendered for
    the message (`detail`, what `ActionKind.plan` returned), the message, and the
    subscription it matched (plain values: this module imports no model, the
    models import it)."""

    subscription_id: int
    broker_id: int
    product_id: int
    # The filter as matched (without any $share/<group>/ prefix).
    match_filter: str
    run_id: int
    index: int
    action: dict[str, Any]
    detail: dict[str, Any]
    topic: str
    payload: bytes
    received_at: datetime.datetime

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this action on this message."""
        return f"{self.run_id}-{self.index}"


# validate(prefix, action, errors): add `errors[f"{prefix}.field"] = message` for
# every broken rule of one action dict (its type is this kind).
Validator = Callable[[str, dict[str, Any], dict[str, str]], None]
# plan(action, template context): what the action would do with this message,
# rendered but not done (a dry run shows it); raises ActionError.
Planner = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
# execute(call): do it. None when done; an OutgoingMessage to publish on the
# subscription's broker, which the worker sends in one connection per broker
# after the batch. Raises on failure (the error is kept on the run).
Executor = Callable[[ActionCall], "OutgoingMessage | None"]


@dataclass(frozen=True)
class ActionKind:
    """One kind of action.

    `fields`: the action editor's fields this kind stores, in order (the editor
    is the union of every kind's fields). `choices`: the choices of the editor
    fields this kind defines (a webhook's `method`, an alert's `op`).
    """

    name: str
    validate: Validator
    plan: Planner
    execute: Executor
    fields: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


ACTION_KINDS: dict[str, ActionKind] = {}


def register_action_kind(kind: ActionKind) -> None:
    """Make a kind available to subscriptions (from an AppConfig.ready())."""
    ACTION_KINDS[kind.name] = kind


def action_kind(name: Any) -> ActionKind | None:
    return ACTION_KINDS.get(name) if isinstance(name, str) else None


def action_types() -> tuple[str, ...]:
    return tuple(ACTION_KINDS)


def editor_choices(field_name: str) -> tuple[str, ...]:
    """The choices of an editor field, from the kind that defines it."""
    for kind in ACTION_KINDS.values():
        if field_name in kind.choices:
            return kind.choices[field_name]
    return ()


def action_label(index: int, action: Any) -> str:
    """How errors name an action: "Action 1 (webhook)", counted from 1 as the
    editor shows them."""
    kind = action.get("type") if isinstance(action, dict) else None
    return _("Action %(number)d (%(type)s)") % {"number": index + 1, "type": kind}


# --- Validation (when a subscription is saved) ------------------------------------


def _validate_one(prefix: str, action: Any, errors: dict[str, str]) -> None:
    if not isinstance(action, dict):
        errors[prefix] = _("Each action is an object with a type.")
        return
    kind = action_kind(action.get("type"))
    if kind is None:
        errors[f"{prefix}.type"] = _("type must be one of: %s.") % ", ".join(
            action_types()
        )
        return
    kind.validate(prefix, action, errors)


def validate_actions(actions: Any) -> None:
    """Raise ValidationError naming `actions[i].field` for every broken rule."""
    if not isinstance(actions, list):
        raise ValidationError(_("actions is a list of action objects."))
    if len(actions) > MAX_ACTIONS:
        raise ValidationError(_("At most %d actions per subscription.") % MAX_ACTIONS)
    errors: dict[str, str] = {}
    for index, action in enumerate(actions):
        _validate_one(f"actions[{index}]", action, errors)
    if errors:
        raise ValidationError([f"{key}: {message}" for key, message in errors.items()])


# --- The message as templates see it, and the dry run ------------------------------


@dataclass(frozen=True)
class MessageContext:
    """The message as templates see it (built in the worker from an ActionRun, or
    from a sample message for a dry run: Subscription.message_context)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: Any
    broker: dict[str, Any]
    subscription: dict[str, Any]

    def as_template_context(self) -> dict[str, Any]:
        text = self.payload.decode("utf-8", errors="replace")
        # Not JSON, or beyond the bounds (depth, size, NaN) that keep templates
        # and encoders safe: the text itself.
        found = parse_json(text)
        parsed: Any = text if found is None else found.value
        return {
            "topic": self.topic,
            "topic_levels": self.topic.split("/"),
            "payload": parsed,
            "payload_text": text,
            "qos": self.qos,
            "retain": self.retain,
            "received_at": self.received_at,
            "broker": self.broker,
            "subscription": self.subscription,
        }


def plan(action: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """What one (validated) action would do with this message, rendered but not
    done."""
    kind = action_kind(action.get("type"))
    if kind is None:
        raise ActionError(_("no such action type: %s") % action.get("type"))
    return kind.plan(action, context)


@dataclass
class Outcome:
    index: int
    type: str
    ok: bool
    detail: dict[str, Any]
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "ok": self.ok,
            "error": self.error,
            **self.detail,
        }


def dry_run(
    actions: list[dict[str, Any]], message: MessageContext
) -> list[dict[str, Any]]:
    """Render every action for a sample message and report, without side effects.

    Rendering is bounded as in a real run; an error names the action and its field
    ("Action 1 (webhook): body: template error: ...")."""
    context = message.as_template_context()
    outcomes = []
    for index, action in enumerate(actions):
        try:
            outcomes.append(Outcome(index, action["type"], True, plan(action, context)))
        except ActionError as exc:
            error = f"{action_label(index, action)}: {exc}"
            outcomes.append(Outcome(index, action["type"], False, {}, error))
    return [o.as_dict() for o in outcomes]
