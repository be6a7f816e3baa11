"""Stored broker secrets stay bound to the destinations they were saved for.

An operator never reads a stored password or client key back, but could otherwise
have the portal send it elsewhere: test the saved broker with another host, or
save another host and let the runtime reconnect. So a stored secret is used only
with the host:port set it was saved with (primary and fallback hosts), over
protection no weaker than then: TLS not turned off, certificate checks not turned
off, the CA bundle unchanged. Settings that leave that set must give the secret
again (or clear it); otherwise the test or the change is refused with an error on
the secret's field. The same rule holds for the API, the pages, the Django admin
and the product MQTT configuration, because all of them call `check_secret_binding`.
"""

from __future__ import annotations

from collections.abc import Collection
from types import SimpleNamespace
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from brokers.models import Broker, parse_host_port

# The attributes that describe where a secret goes; Broker rows, ConnectionSettings
# and detached copies all have them.
BINDING_FIELDS = (
    "host",
    "port",
    "fallback_hosts",
    "use_tls",
    "tls_insecure",
    "ca_cert",
    *Broker.SECRET_FIELDS,
)


def _host(value: str) -> str:
    return str(value).strip().strip("[]").lower().rstrip(".")


def destinations(settings: Any) -> set[tuple[str, int]]:
    """Every host:port the settings may connect to (primary and fallbacks)."""
    found = {(_host(settings.host), int(settings.port))}
    for entry in settings.fallback_hosts or ():
        try:
            host, port = parse_host_port(entry)
        except ValidationError:
            continue  # validated elsewhere; a malformed entry is never dialled
        found.add((_host(host), port))
    return found


def _pem(value: str | None) -> str:
    return (value or "").replace("\r\n", "\n").strip()


def what_moved(saved: Any, candidate: Any) -> str | None:
    """Which change takes a secret away from its binding, or None."""
    if not destinations(candidate) <= destinations(saved):
        return "destination"
    if saved.use_tls and not candidate.use_tls:
        return "tls"
    if saved.use_tls and not saved.tls_insecure and candidate.tls_insecure:
        return "tls_insecure"
    if candidate.use_tls and _pem(candidate.ca_cert) != _pem(saved.ca_cert):
        return "ca_cert"
    return None


def binding_snapshot(broker: Any) -> Any:
    """The values the binding compares, copied (the row may be changed next)."""
    values = {name: getattr(broker, name) for name in BINDING_FIELDS}
    values["fallback_hosts"] = list(values["fallback_hosts"] or ())
    return SimpleNamespace(**values)


def binding_of(broker: Any) -> dict[str, Any]:
    """The binding values of `broker` as plain JSON, for a secret stored elsewhere
    (e.g. a managed broker's admin password) that must stay bound the same way."""
    return {
        "host": broker.host,
        "port": int(broker.port),
        "fallback_hosts": list(broker.fallback_hosts or ()),
        "use_tls": bool(broker.use_tls),
        "tls_insecure": bool(broker.tls_insecure),
        "ca_cert": _pem(broker.ca_cert),
    }


def secret_binding_errors(
    saved: Any, candidate: Any, supplied: Collection[str]
) -> dict[str, str]:
    """Errors, by field, for stored secrets `candidate` would use elsewhere.

    `saved`: the stored settings; `candidate`: what would be tested or saved;
    `supplied`: the secret fields given anew (or cleared) with this request.
    """
    errors: dict[str, str] = {}
    moved = None
    for name in Broker.SECRET_FIELDS:
        stored = getattr(saved, name, "") or ""
        if not stored or name in supplied or getattr(candidate, name, "") != stored:
            continue
        moved = moved or what_moved(saved, candidate)
        if moved is None:
            return {}
        errors[name] = _binding_message(name, moved)
    return errors


def _binding_message(name: str, moved: str) -> str:
    secret = _("password") if name == "password" else _("client key")
    reasons = {
        "destination": _("the host, port or fallback hosts changed"),
        "tls": _("TLS is turned off"),
        "tls_insecure": _("certificate verification is turned off"),
        "ca_cert": _("the CA certificate changed"),
    }
    return _(
        "The stored %(secret)s is only sent to the host:port set it was saved "
        "with, over TLS no weaker than then; here %(reason)s. Enter the "
        "%(secret)s again to use it with these settings."
    ) % {"secret": secret, "reason": reasons[moved]}


def check_secret_binding(saved: Any, candidate: Any, supplied: Collection[str]) -> None:
    """Raise ValidationError naming each stored secret `candidate` would use
    outside its binding (see the module docstring)."""
    errors = secret_binding_errors(saved, candidate, supplied)
    if errors:
        raise ValidationError(errors)
