"""Subscription actions: what runs for every matching message.

An action is a dict with a `type`: webhook, republish, alert, email or telemetry.
Text fields are templates in a vetted, bounded part of Django's template language
(`brokers.templating`: no escaping, a `json` filter, a render budget), rendered on a
context built from the message (`topic`, `topic_levels`, `payload`, `payload_text`,
`qos`, `retain`, `received_at`, `broker`, `subscription`). Rendering never sees
secrets.

Webhook header values (`Authorization: Bearer ...`) are secrets: the model field
keeps each one encrypted in the column, pages and the API show them as "***", and
writing "***" back keeps the stored value (`keep_masked_headers`).
"""

from __future__ import annotations

import logging
import math
import operator
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from brokers.templating import TemplateRenderError, render_bounded, template_problem
from mqttadmin.audit import SECRET_MASK
from mqttadmin.lib import outbound
from mqttadmin.lib.crypto import Secret
from mqttadmin.lib.payloads import parse_json

logger = logging.getLogger(__name__)

ACTION_TYPES = ("webhook", "republish", "alert", "email", "telemetry")
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
MAX_ACTIONS = 20
WEBHOOK_ATTEMPTS = 4
WEBHOOK_BACKOFF = (0.5, 1.0, 2.0)

# A header name is an HTTP token; a value is visible ASCII, spaces and tabs (what
# httpx sends): a line break would otherwise surface later as a send error that
# quotes the secret value.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")


class ActionError(Exception):
    """An action failed; the message is kept as the subscription's last error."""


# --- Validation -----------------------------------------------------------------


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


def _validate_one(prefix: str, action: Any, errors: dict[str, str]) -> None:
    if not isinstance(action, dict):
        errors[prefix] = _("Each action is an object with a type.")
        return
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        errors[f"{prefix}.type"] = _("type must be one of: %s.") % ", ".join(
            ACTION_TYPES
        )
        return
    if kind == "webhook":
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
        _check_template(errors, f"{prefix}.body", action.get("body"), False)
        timeout = action.get("timeout_s", 10)
        if not isinstance(timeout, int | float) or not 0.1 <= timeout <= 60:
            errors[f"{prefix}.timeout_s"] = _("timeout_s is from 0.1 to 60 seconds.")
    elif kind == "republish":
        _check_template(errors, f"{prefix}.topic", action.get("topic"), True)
        if f"{prefix}.topic" not in errors and republish_topic_is_reserved(
            action["topic"]
        ):
            errors[f"{prefix}.topic"] = DOLLAR_REPUBLISH_ERROR
        _check_template(errors, f"{prefix}.payload", action.get("payload"), False)
        if action.get("qos", 0) not in (0, 1, 2):
            errors[f"{prefix}.qos"] = _("QoS must be 0, 1 or 2.")
        if not isinstance(action.get("retain", False), bool):
            errors[f"{prefix}.retain"] = _("retain is true or false.")
    elif kind == "alert":
        _check_template(errors, f"{prefix}.value", action.get("value"), True)
        if action.get("op") not in OPERATORS:
            errors[f"{prefix}.op"] = _("op must be one of: %s.") % " ".join(OPERATORS)
        threshold = action.get("threshold")
        if not isinstance(threshold, int | float) or isinstance(threshold, bool):
            errors[f"{prefix}.threshold"] = _("threshold is a number.")
        if action.get("severity", "warning") not in SEVERITIES:
            errors[f"{prefix}.severity"] = _(
                "severity must be one of: %s."
            ) % ", ".join(SEVERITIES)
        _check_template(errors, f"{prefix}.message", action.get("message"), False)
    elif kind == "email":
        recipients = action.get("to")
        if isinstance(recipients, str):
            recipients = [r.strip() for r in recipients.split(",") if r.strip()]
        if not recipients or not isinstance(recipients, list):
            errors[f"{prefix}.to"] = _("to lists one or more e-mail addresses.")
        else:
            for address in recipients:
                try:
                    validate_email(address)
                except ValidationError:
                    errors[f"{prefix}.to"] = (
                        _("“%s” is not an e-mail address.") % address
                    )
                    break
        _check_template(errors, f"{prefix}.subject", action.get("subject"), True)
        _check_template(errors, f"{prefix}.body", action.get("body"), False)


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


# --- Header secrets -------------------------------------------------------------


def _headers_of(action: Any) -> dict[Any, Any] | None:
    """An action's headers when they are a mapping (validation reports the rest)."""
    if isinstance(action, dict) and isinstance(action.get("headers"), dict):
        return action["headers"]
    return None


def actions_with_headers(actions: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, action) of each action that has headers."""
    if isinstance(actions, list):
        for index, action in enumerate(actions):
            if _headers_of(action):
                yield index, action


def map_header_values(actions: Any, transform: Callable[[str], Any]) -> Any:
    """A copy of `actions` with `transform` applied to every text header value.

    Any action's `headers` count, not only a webhook's: a type changed by hand
    must not leave a secret in clear. Anything but a list is returned unchanged
    (lookups hand the field single values).
    """
    if not isinstance(actions, list):
        return actions
    result = []
    for action in actions:
        headers = _headers_of(action)
        if headers:
            action = {
                **action,
                "headers": {
                    name: transform(value) if isinstance(value, str) else value
                    for name, value in headers.items()
                },
            }
        result.append(action)
    return result


def mask_headers(actions: Any) -> Any:
    """The actions as pages, the API and the audit log show them: header names
    with "***" for every value."""
    return map_header_values(actions, lambda _value: SECRET_MASK)


def header_count(actions: Any) -> int:
    """How many header values (secrets) the actions hold."""
    return sum(len(action["headers"]) for _i, action in actions_with_headers(actions))


def header_audit_values(name: str, actions: Any) -> dict[str, Any]:
    """An audit snapshot of an actions field: the actions with masked headers, and
    each header value as a Secret under `name[i].headers.Header`, so a changed value
    is recorded as changed ("***" -> "***") without the value."""
    values: dict[str, Any] = {name: mask_headers(actions)}
    for index, action in actions_with_headers(actions):
        for header, value in action["headers"].items():
            values[f"{name}[{index}].headers.{header}"] = Secret(value)
    return values


def _destination(url: Any) -> tuple[str, str, str, str] | None:
    """What a secret header is bound to: the whole URL (scheme and host in any
    case; path and query exactly), as a receiver may route on either."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    if not parts.netloc:
        return None
    return (parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query)


def _stored_header(stored: Any, index: int, url: Any, name: str) -> tuple[bool, Any]:
    """(found, value) of header `name` in a stored action calling exactly `url`,
    the one at the same position first."""
    destination = _destination(url)
    if destination is None:
        return False, None
    candidates = [
        (source_index, action)
        for source_index, action in actions_with_headers(stored)
        if _destination(action.get("url")) == destination
    ]
    candidates.sort(key=lambda c: (c[0] != index, c[0]))
    for _source_index, action in candidates:
        for header, value in action["headers"].items():
            if str(header).lower() == name.lower():
                return True, value
    return False, None


def keep_masked_headers(actions: Any, stored: Any) -> Any:
    """The actions to store when a client sent `actions` over `stored` ones: a header
    value given as "***" (what reads show) keeps the stored value of that header.

    The value comes from a stored action calling the same URL (path and query
    included) with a header of that name (in any case), the same position first.
    So actions can be reordered without re-typing secrets, but a secret never
    follows its action to another URL, not even another path on the same server
    (a receiver may route by path, or log it): who cannot read it cannot send it
    elsewhere. Raises ValidationError (`actions[i].headers: ...`) for a mask with
    no such stored value.
    """
    if not isinstance(actions, list):
        return actions
    errors: list[str] = []
    result = []
    for index, action in enumerate(actions):
        headers = _headers_of(action)
        if not headers or SECRET_MASK not in headers.values():
            result.append(action)
            continue
        kept: dict[Any, Any] = {}
        for name, value in headers.items():
            if value != SECRET_MASK:
                kept[name] = value
                continue
            found, stored_value = _stored_header(
                stored, index, action.get("url"), str(name)
            )
            if found:
                kept[name] = stored_value
            else:
                errors.append(
                    f"actions[{index}].headers: "
                    + _(
                        "“%s” is *** but no saved action calling this exact URL has "
                        "that header (a secret does not follow a changed URL): "
                        "enter its value."
                    )
                    % name
                )
        result.append({**action, "headers": kept})
    if errors:
        raise ValidationError(errors)
    return result


# --- Rendering ------------------------------------------------------------------


@dataclass(frozen=True)
class MessageContext:
    """The message as templates see it (built in the worker from an ActionRun)."""

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


def action_label(index: int, action: Any) -> str:
    """How errors name an action: "Action 1 (webhook)", counted from 1 as the
    editor shows them."""
    kind = action.get("type") if isinstance(action, dict) else None
    return _("Action %(number)d (%(type)s)") % {"number": index + 1, "type": kind}


# --- Planning (dry run) and execution ------------------------------------------


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


def plan(action: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """What the action would do with this message, rendered but not done."""
    kind = action["type"]
    if kind == "webhook":
        return {
            "method": str(action.get("method", "POST")).upper(),
            "url": action["url"],
            "headers": sorted(action.get("headers", {})),
            "body": render(action.get("body") or "{{ payload_text }}", context, "body"),
        }
    if kind == "republish":
        return {
            "topic": render(action["topic"], context, "topic").strip(),
            "payload": render(
                action.get("payload") or "{{ payload_text }}", context, "payload"
            ),
            "qos": action.get("qos", 0),
            "retain": action.get("retain", False),
        }
    if kind == "alert":
        value = extract_number(action["value"], context, "value")
        crossed = OPERATORS[action["op"]](value, float(action["threshold"]))
        return {
            "value": value,
            "crossed": crossed,
            "would": "open" if crossed else "resolve",
            "severity": action.get("severity", "warning"),
            "message": render(action.get("message") or "", context, "message"),
        }
    if kind == "email":
        recipients = action["to"]
        if isinstance(recipients, str):
            recipients = [r.strip() for r in recipients.split(",") if r.strip()]
        return {
            "to": recipients,
            "subject": render(action["subject"], context, "subject").strip(),
            "body": render(action.get("body") or "{{ payload_text }}", context, "body"),
        }
    return {"would": "hand the message to device telemetry"}


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


_client: Any = None
_client_lock = threading.Lock()


def _http_client() -> Any:
    """One pooled client for all webhooks: connections are kept alive and reused.

    Every connection it opens passes the outbound policy (mqttadmin.lib.outbound):
    internal addresses are refused after DNS resolution, redirects not followed.
    """
    global _client

    with _client_lock:
        if _client is None:
            _client = outbound.http_client()
        return _client


def _without_header_values(text: str, headers: dict[str, Any]) -> str:
    """An error text fit for logs and `last_error`: a transport error may quote a
    header it could not send, and header values are secrets."""
    for value in headers.values():
        if isinstance(value, str) and value:
            # As given, and as a bytes repr shows it (b'Bearer x\\r...').
            for form in {value, repr(value.encode("utf-8", "replace"))[2:-1]}:
                text = text.replace(form, SECRET_MASK)
    return text


BLOCKED = _l("blocked by the outbound policy")


def _url_for_error(url: str) -> str:
    """scheme://host[:port] of a URL: its path and query may carry tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def webhook_call(
    action: dict[str, Any],
    body: str,
    idempotency_key: str,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call a webhook; retry connection errors and 5xx with backoff, not 4xx."""
    import httpx

    method = str(action.get("method", "POST")).upper()
    headers = {"Idempotency-Key": idempotency_key, **action.get("headers", {})}
    if "content-type" not in {k.lower() for k in headers}:
        headers["Content-Type"] = "application/json"
    timeout = float(action.get("timeout_s", 10))
    last_error = ""
    for attempt in range(WEBHOOK_ATTEMPTS):
        if attempt:
            sleep(WEBHOOK_BACKOFF[min(attempt - 1, len(WEBHOOK_BACKOFF) - 1)])
        try:
            response = _http_client().request(
                method,
                action["url"],
                content=body.encode("utf-8") if method != "GET" else None,
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            if outbound.blocked_cause(exc) is not None:
                # Nothing was sent; retrying cannot help, and the text must not
                # depend on what (if anything) listens there.
                raise ActionError(
                    _("webhook %(url)s: %(reason)s")
                    % {"url": _url_for_error(action["url"]), "reason": BLOCKED}
                ) from None
            last_error = _without_header_values(
                f"{exc.__class__.__name__}: {exc}", action.get("headers", {})
            )
            continue
        if response.status_code >= 500:
            last_error = f"HTTP {response.status_code}"
            continue
        if response.status_code >= 400:
            raise ActionError(f"webhook answered HTTP {response.status_code}")
        return response.status_code
    raise ActionError(f"webhook failed after {WEBHOOK_ATTEMPTS} attempts: {last_error}")
