"""Backends that apply the portal's MQTT users and roles to a broker."""

from __future__ import annotations

from typing import Any

from acl.backends.base import ApplyError, Backend
from acl.choices import Management


def backend_for(managed: Any) -> Backend:
    """The backend of a managed broker; ApplyError when it is not managed."""
    if managed.management == Management.DYNSEC:
        from acl.backends.dynsec import DynsecBackend

        return DynsecBackend(managed)
    if managed.management == Management.FILES:
        from acl.backends.files import FilesBackend

        return FilesBackend(managed)
    raise ApplyError(
        "this broker is not managed by the portal: choose dynsec or files in its "
        "management settings, then sync"
    )


__all__ = ["ApplyError", "Backend", "backend_for"]
