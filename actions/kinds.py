"""The action kinds of this app: webhook, republish, alert and e-mail.

Each kind is validated when a subscription is saved, planned (rendered) for a
message, and executed by the worker; `ready()` registers them into brokers'
registry (brokers.action_kinds), in this order. Text fields are templates in a
vetted, bounded part of Django's template language (`actions.templating`: no
escaping, a `json` filter, a render budget), rendered on a context built from the
message (`topic`, `topic_levels`, `payload`, `payload_text`, `qos`, `retain`,
`received_at`, `broker`, `subscription`). Rendering never sees secrets.

Webhook header values (`Authorization: Bearer ...`) are secrets: see
brokers.action_headers for how they are stored and shown.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from actions.templating import TemplateRenderError, render_bounded, template_problem
from actions.webhooks import webhook_call
from alerts.models import Alert, AlertState, alert_key
from alerts.services import alert_open, alerts_resolve
from brokers.action_kinds import (
    ActionCall,
    ActionError,
    ActionKind,
    register_action_kind,
)
from brokers.client import OutgoingMessage
from mqttadmin.lib import outbound
from mqttadmin.lib.topics import topic_matches, validate_topic_name

HTTP_METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
SEVERITIES = ("info", "warning", "critical")

# A header name is an HTTP token; a value is visible ASCII, spaces and tabs (what
# httpx sends): a line break would otherwise surface later as a send error that
# quotes the secret value.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")


# --- Rendering ------------------------------------------------------------------


def render(template: str | None, context: dict[str, Any], field: str = "") -> str:
    """Render one template field (never escaped, within the render budget); a
    broken or runaway template is an ActionError naming the field, never a crash."""
    if not template:
        return ""
    try:
        return render_bounded(template, context)
    except TemplateRenderError as exc:
        prefix = f"{field}: " if field else ""
        raise ActionError(f"{prefix}template error: {exc}") from None


def extract_number(template: str, context: dict[str, Any], field: str = "") -> float:
    """The rendered template as a finite number (an alert's value)."""
    raw = render(template, context, field).strip()
    prefix = f"{field}: " if field else ""
    try:
        value = float(raw)
    except ValueError:
        raise ActionError(f"{prefix}value {raw[:100]!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise ActionError(f"{prefix}value {raw!r} is not a finite number")
    return value


def _check_template(
    errors: dict[str, str], key: str, value: Any, required: bool
) -> None:
    if value in (None, ""):
        if required:
            errors[key] = _("This field is required.")
        return
    if not isinstance(value, str):
        errors[key] = _("Must be text (a template).")
        return
    problem = template_problem(value)
    if problem:
        errors[key] = _("Template error: %s") % problem


# --- Webhook ----------------------------------------------------------------------


def _check_headers(errors: dict[str, str], key: str, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            errors[key] = _("“%s” is not a valid header name.") % name
            return
        if not HEADER_VALUE.match(value):
            # Never the value in the message: it is a secret.
            errors[key] = (
                _(
                    "The value of “%s” holds characters a header cannot carry "
                    "(line breaks, control or non-ASCII characters)."
                )
                % name
            )
            return


def _check_secret_list(
    errors: dict[str, str], prefix: str, action: dict[str, Any], headers: dict
) -> None:
    """`secret_headers` (brokers.action_headers) names headers of this action."""
    if "secret_headers" not in action:
        return  # saved before the choice existed: every header is a secret
    marked = action["secret_headers"]
    if not isinstance(marked, list) or not all(isinstance(n, str) for n in marked):
        errors[f"{prefix}.headers"] = _("secret_headers lists header names.")
        return
    unknown = sorted({n.lower() for n in marked} - {k.lower() for k in headers})
    if unknown:
        errors[f"{prefix}.headers"] = _(
            "secret_headers names headers the action does not send: %s."
        ) % ", ".join(unknown)


def validate_webhook(
    prefix: str, action: dict[str, Any], errors: dict[str, str]
) -> None:
    url = action.get("url", "")
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.netloc:
        errors[f"{prefix}.url"] = _("url must be an http:// or https:// address.")
    elif blocked := outbound.url_error(url):
        # Literal internal addresses early; names are checked when connecting.
        errors[f"{prefix}.url"] = blocked
    method = str(action.get("method", "POST")).upper()
    if method not in HTTP_METHODS:
        errors[f"{prefix}.method"] = _("method must be one of: %s.") % ", ".join(
            HTTP_METHODS
        )
    headers = action.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        errors[f"{prefix}.headers"] = _("headers map names to text values.")
    else:
        _check_headers(errors, f"{prefix}.headers", headers)
        _check_secret_list(errors, prefix, action, headers)
    _check_template(errors, f"{prefix}.body", action.get("body"), False)
    timeout = action.get("timeout_s", 10)
    if not isinstance(timeout, int | float) or not 0.1 <= timeout <= 60:
        errors[f"{prefix}.timeout_s"] = _("timeout_s is from 0.1 to 60 seconds.")


def plan_webhook(action: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": str(action.get("method", "POST")).upper(),
        "url": action["url"],
        "headers": sorted(action.get("headers", {})),
        "body": render(action.get("body") or "{{ payload_text }}", context, "body"),
    }


def execute_webhook(call: ActionCall) -> None:
    webhook_call(call.action, call.detail["body"], call.idempotency_key)


# --- Republish --------------------------------------------------------------------


# A republish runs with nobody behind it, its topic rendered from a message that
# any client allowed on the subscribed topic wrote: it never reaches the broker's
# `$` topics ($CONTROL is its control API), whoever saved the action.
DOLLAR_REPUBLISH_ERROR = _l(
    "A republish topic must not start with $: those topics belong to the broker "
    "($CONTROL is its control API, $SYS its statistics)."
)


def republish_topic_is_reserved(template: str) -> bool:
    """Whether a republish topic template visibly targets a `$` topic: as written,
    or as rendered for a message without fields (`{% if %}` tricks included).
    The rendered topic is checked again for every message at run time."""
    if template.strip().startswith("$"):
        return True
    try:
        rendered = render_bounded(template, {})
    except Exception:
        return False  # a template that cannot render fails at run time anyway
    return rendered.strip().startswith("$")


def validate_republish(
    prefix: str, action: dict[str, Any], errors: dict[str, str]
) -> None:
    _check_template(errors, f"{prefix}.topic", action.get("topic"), True)
    if f"{prefix}.topic" not in errors and republish_topic_is_reserved(action["topic"]):
        errors[f"{prefix}.topic"] = str(DOLLAR_REPUBLISH_ERROR)
    _check_template(errors, f"{prefix}.payload", action.get("payload"), False)
    if action.get("qos", 0) not in (0, 1, 2):
        errors[f"{prefix}.qos"] = _("QoS must be 0, 1 or 2.")
    if not isinstance(action.get("retain", False), bool):
        errors[f"{prefix}.retain"] = _("retain is true or false.")


def plan_republish(action: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {
        "topic": render(action["topic"], context, "topic").strip(),
        "payload": render(
            action.get("payload") or "{{ payload_text }}", context, "payload"
        ),
        "qos": action.get("qos", 0),
        "retain": action.get("retain", False),
    }


def execute_republish(call: ActionCall) -> OutgoingMessage:
    """The message to publish (the worker sends a batch's republishes over one
    connection per broker)."""
    detail = call.detail
    topic = detail["topic"]
    try:
        validate_topic_name(topic)
    except ValidationError as exc:
        raise ActionError(f"rendered topic {topic!r} is invalid: {exc}") from None
    if topic.startswith("$"):
        # Rendered from message data anyone on the subscribed topic writes: never
        # the broker's own topics ($CONTROL is its control API), whoever saved
        # the action (see republish_topic_is_reserved).
        raise ActionError(
            f"rendered topic {topic!r} starts with $: republishing to the "
            "broker's own topics ($CONTROL, $SYS, ...) is refused"
        )
    if topic_matches(call.match_filter, topic):
        # The copy would match this subscription again: an endless loop.
        raise ActionError(f"republishing to {topic!r} would loop back here")
    return OutgoingMessage(
        topic,
        detail["payload"].encode("utf-8"),
        qos=int(detail["qos"]),
        retain=bool(detail["retain"]),
    )


# --- Alert ------------------------------------------------------------------------


def validate_alert(prefix: str, action: dict[str, Any], errors: dict[str, str]) -> None:
    _check_template(errors, f"{prefix}.value", action.get("value"), True)
    if action.get("op") not in OPERATORS:
        errors[f"{prefix}.op"] = _("op must be one of: %s.") % " ".join(OPERATORS)
    threshold = action.get("threshold")
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        errors[f"{prefix}.threshold"] = _("threshold is a number.")
    if action.get("severity", "warning") not in SEVERITIES:
        errors[f"{prefix}.severity"] = _("severity must be one of: %s.") % ", ".join(
            SEVERITIES
        )
    _check_template(errors, f"{prefix}.message", action.get("message"), False)


def plan_alert(action: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    value = extract_number(action["value"], context, "value")
    crossed = OPERATORS[action["op"]](value, float(action["threshold"]))
    return {
        "value": value,
        "crossed": crossed,
        "would": "open" if crossed else "resolve",
        "severity": action.get("severity", "warning"),
        "message": render(action.get("message") or "", context, "message"),
    }


def _default_message(topic: str, action: dict[str, Any], detail: dict[str, Any]) -> str:
    return f"{topic}: {detail['value']} {action['op']} {action['threshold']}"


def execute_alert(call: ActionCall) -> None:
    """Open one alert per (subscription action, topic) when the value crosses the
    threshold; resolve it when it comes back."""
    action, detail, topic = call.action, call.detail, call.topic
    rule_key = alert_key("subscription", call.subscription_id, call.index)
    if detail["crossed"]:
        if Alert.objects.filter(
            rule_key=rule_key, subject=topic, state=AlertState.OPEN
        ).exists():
            return
        # None when another worker opened it first: still exactly one open alert.
        alert_open(
            product_id=call.product_id,
            key=rule_key,
            subject=topic,
            severity=detail["severity"],
            message=detail["message"] or _default_message(topic, action, detail),
            value=detail["value"],
            threshold=float(action["threshold"]),
        )
    else:
        alerts_resolve(key=rule_key, subject=topic, value=detail["value"])


# --- E-mail -----------------------------------------------------------------------


def _recipients(action: dict[str, Any]) -> Any:
    recipients = action.get("to")
    if isinstance(recipients, str):
        recipients = [r.strip() for r in recipients.split(",") if r.strip()]
    return recipients


def validate_email_action(
    prefix: str, action: dict[str, Any], errors: dict[str, str]
) -> None:
    recipients = _recipients(action)
    if not recipients or not isinstance(recipients, list):
        errors[f"{prefix}.to"] = _("to lists one or more e-mail addresses.")
    else:
        for address in recipients:
            try:
                validate_email(address)
            except ValidationError:
                errors[f"{prefix}.to"] = _("“%s” is not an e-mail address.") % address
                break
    _check_template(errors, f"{prefix}.subject", action.get("subject"), True)
    _check_template(errors, f"{prefix}.body", action.get("body"), False)


def plan_email(action: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {
        "to": _recipients(action),
        "subject": render(action["subject"], context, "subject").strip(),
        "body": render(action.get("body") or "{{ payload_text }}", context, "body"),
    }


def execute_email(call: ActionCall) -> None:
    detail = call.detail
    send_mail(
        detail["subject"][:200],
        detail["body"],
        settings.DEFAULT_FROM_EMAIL,
        detail["to"],
    )


KINDS = (
    ActionKind(
        "webhook",
        validate=validate_webhook,
        plan=plan_webhook,
        execute=execute_webhook,
        fields=("url", "method", "headers", "body", "timeout_s"),
        choices={"method": HTTP_METHODS},
    ),
    ActionKind(
        "republish",
        validate=validate_republish,
        plan=plan_republish,
        execute=execute_republish,
        fields=("topic", "payload", "qos", "retain"),
    ),
    ActionKind(
        "alert",
        validate=validate_alert,
        plan=plan_alert,
        execute=execute_alert,
        fields=("value", "op", "threshold", "severity", "message"),
        choices={"op": tuple(OPERATORS), "severity": SEVERITIES},
    ),
    ActionKind(
        "email",
        validate=validate_email_action,
        plan=plan_email,
        execute=execute_email,
        fields=("to", "subject", "body"),
    ),
)


def register_kinds() -> None:
    """Called from ActionsConfig.ready()."""
    for kind in KINDS:
        register_action_kind(kind)
