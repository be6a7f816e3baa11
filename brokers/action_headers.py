"""Webhook header values in stored subscription actions are secrets.

The model field keeps each one encrypted in the column (`map_header_values`),
pages and the API show them as "***" (`mask_headers`), and writing "***" back
keeps the stored value (`keep_masked_headers`), only for the same URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from mqttadmin.audit import SECRET_MASK
from mqttadmin.lib.crypto import Secret


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
