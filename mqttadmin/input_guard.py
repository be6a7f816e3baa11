"""NUL characters in request input are refused before any view sees them.

A NUL (U+0000) can be neither stored in PostgreSQL text or jsonb (a DataError, so a
500) nor shown sensibly anywhere, and no field of the portal has a use for one.
Django's form CharFields refuse it already; query parameters read directly
(`?search=`, `?topic=`, ...), form fields read without a form and JSON bodies do
not. So it is refused once, here, for every request: `RefuseNulMiddleware` checks
query parameters and form fields, `mqttadmin.api.parsers.BoundedJSONParser` checks
JSON bodies. The answer is a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.utils.translation import gettext as _

NUL = "\x00"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def nul_message() -> str:
    return _("Null characters (NUL) are not allowed.")


def first_nul_path(value: Any, path: str = "") -> str | None:
    """Where in a parsed JSON value (keys included) a NUL first occurs, as
    `name[0].key`, or None. Iterative: the value's depth is the sender's choice."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return where or "non_field_errors"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                if NUL in str(key):
                    return name
                stack.append((child, name))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def _first_nul_param(pairs: Iterable[tuple[str, list[Any]]]) -> str | None:
    for name, values in pairs:
        if NUL in name:
            return name.replace(NUL, "\\x00")
        if any(isinstance(v, str) and NUL in v for v in values):
            return name
    return None


class RefuseNulMiddleware:
    """A 400 naming the parameter for any query parameter or form field with a
    NUL (JSON bodies: `mqttadmin.api.parsers`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = _first_nul_param(request.GET.lists())
        if name is None and request.content_type in FORM_TYPES:
            name = _first_nul_param(request.POST.lists())
        if name is not None:
            return self.refusal(request, name)
        return self.get_response(request)

    @staticmethod
    def refusal(request: HttpRequest, name: str) -> HttpResponse:
        if request.path.startswith("/api/"):
            return JsonResponse({name: [nul_message()]}, status=400)
        return HttpResponseBadRequest(
            f"{name}: {nul_message()}", content_type="text/plain; charset=utf-8"
        )
