"""Webhook headers in stored subscription actions, and which of them are secrets.

An action lists its secret headers by name in `secret_headers` (the user's
choice; `secret_by_default` proposes it for Authorization, Cookie and names with
key, token or secret). An action saved before that choice existed has no list:
all its header values were secrets then, and stay so.

The model field keeps every header value encrypted in the column
(`map_header_values`). Pages and the API show secret values as "***" and plain
ones as they are (`mask_headers`); writing "***" back for a secret keeps the
stored value (`keep_masked_headers`), only for the same URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from mqttadmin.audit import SECRET_MASK
from mqttadmin.lib.crypto import Secret

# Headers whose values are credentials unless the user says otherwise.
SECRET_HEADER_NAMES = frozenset({"authorization", "proxy-authorization", "cookie"})
SECRET_HEADER_PARTS = re.compile(r"key|token|secret|passw", re.IGNORECASE)
# The action field that lists the secret headers by name.
MARKED_FIELD = "secret_headers"


def secret_by_default(name: str) -> bool:
    """Whether a new header is a secret unless the user unticks it."""
    return name.lower() in SECRET_HEADER_NAMES or bool(SECRET_HEADER_PARTS.search(name))


def secret_names(action: Any) -> set[str]:
    """The lower-case names of the action's secret headers; every header of an
    action saved before the choice existed (no list)."""
    headers = _headers_of(action) or {}
    marked = action.get(MARKED_FIELD) if isinstance(action, dict) else None
    if not isinstance(marked, list):
        return {str(name).lower() for name in headers}
    return {name.lower() for name in marked if isinstance(name, str)}


def with_secret_list(action: Any) -> Any:
    """The action with an explicit `secret_headers` list (the names as its headers
    spell them): kept as given, else the default by name, and a header sent as
    "***" is a secret (only a secret can be kept that way)."""
    headers = _headers_of(action)
    if headers is None:
        return action
    if isinstance(action.get(MARKED_FIELD), list):
        return action
    names = [
        name
        for name, value in headers.items()
        if isinstance(name, str) and (secret_by_default(name) or value == SECRET_MASK)
    ]
    return {**action, MARKED_FIELD: names}


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
    """The actions as pages, the API and the audit log show them: "***" for the
    value of every secret header, plain headers as they are, and the list of secret
    names spelled out (also for actions saved before it existed)."""
    if not isinstance(actions, list):
        return actions
    result = []
    for action in actions:
        headers = _headers_of(action)
        if headers is not None:
            secret = secret_names(action)
            action = {
                **action,
                "headers": {
                    name: SECRET_MASK
                    if str(name).lower() in secret and isinstance(value, str)
                    else value
                    for name, value in headers.items()
                },
                # Sorted: a stored action's header order is not kept (PostgreSQL's
                # jsonb orders keys its own way), and the audit compares lists.
                MARKED_FIELD: sorted(
                    (n for n in headers if str(n).lower() in secret),
                    key=lambda n: str(n).lower(),
                ),
            }
        result.append(action)
    return result


def header_count(actions: Any) -> int:
    """How many header values (secrets) the actions hold."""
    return sum(len(action["headers"]) for _i, action in actions_with_headers(actions))


def header_audit_values(name: str, actions: Any) -> dict[str, Any]:
    """An audit snapshot of an actions field: the actions with masked headers, and
    each secret header value as a Secret under `name[i].headers.Header`, so a
    changed value is recorded as changed ("***" -> "***") without the value (plain
    values are in the actions themselves)."""
    values: dict[str, Any] = {name: mask_headers(actions)}
    for index, action in actions_with_headers(actions):
        secret = secret_names(action)
        for header, value in action["headers"].items():
            if str(header).lower() in secret:
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


def unkept_secrets(actions: Any, stored: Any) -> dict[int, list[str]]:
    """By action index, the secret headers sent as "***" that have no stored value
    to keep: no saved action calls this exact URL with that header (a changed
    URL drops them)."""
    missing: dict[int, list[str]] = {}
    if not isinstance(actions, list):
        return missing
    for index, action in enumerate(actions):
        headers = _headers_of(action)
        if not headers:
            continue
        secret = secret_names(with_secret_list(action))
        for name, value in headers.items():
            if value != SECRET_MASK or str(name).lower() not in secret:
                continue
            found, _value = _stored_header(stored, index, action.get("url"), str(name))
            if not found:
                missing.setdefault(index, []).append(str(name))
    return missing


def unkept_message(names: list[str], url_changed: bool) -> str:
    """Why secret values cannot be kept, naming the headers, never their values."""
    listed = ", ".join(f"“{name}”" for name in names)
    if url_changed:
        return (
            _(
                "The URL changed, so the saved values of the secret headers %s were "
                "dropped (a secret is sent only to the URL it was saved for): enter "
                "them again."
            )
            % listed
        )
    return _("The secret headers %s have no saved value: enter one.") % listed


def url_changed(stored: Any, index: int, url: Any) -> bool:
    """Whether the stored action at `index` had headers and called another URL."""
    if not isinstance(stored, list) or index >= len(stored):
        return False
    before = stored[index]
    return bool(_headers_of(before)) and _destination(
        before.get("url")
    ) != _destination(url)


def keep_masked_headers(actions: Any, stored: Any) -> Any:
    """The actions to store when a client sent `actions` over `stored` ones: each
    with its list of secret headers (`with_secret_list`), and a secret header's
    value given as "***" (what reads show) replaced by the stored value.

    The value comes from a stored action calling the same URL (path and query
    included) with a header of that name (in any case), the same position first.
    So actions can be reordered without re-typing secrets, but a secret never
    follows its action to another URL, not even another path on the same server
    (a receiver may route by path, or log it): who cannot read it cannot send it
    elsewhere. Plain headers are stored as sent. Raises ValidationError
    (`actions[i].headers: ...`) for a mask with no such stored value.
    """
    if not isinstance(actions, list):
        return actions
    actions = [with_secret_list(action) for action in actions]
    missing = unkept_secrets(actions, stored)
    if missing:
        raise ValidationError(
            [
                f"actions[{index}].headers: "
                + unkept_message(
                    names, url_changed(stored, index, actions[index].get("url"))
                )
                for index, names in missing.items()
            ]
        )
    result = []
    for index, action in enumerate(actions):
        headers = _headers_of(action)
        if not headers or SECRET_MASK not in headers.values():
            result.append(action)
            continue
        secret = secret_names(action)
        kept: dict[Any, Any] = {}
        for name, value in headers.items():
            if value == SECRET_MASK and str(name).lower() in secret:
                _found, value = _stored_header(
                    stored, index, action.get("url"), str(name)
                )
            kept[name] = value
        result.append({**action, "headers": kept})
    return result
