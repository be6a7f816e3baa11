"""The portal's error pages (403, 404) and how refusals are logged.

A 403 is an answer, not a fault: the page says why (the reason the view raised,
e.g. "This needs the operator role in Demo") and offers a way back; the log gets
one line without a traceback. Django's debug pages stay behind DEBUG=1.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _


def _back_url(request: HttpRequest) -> str:
    """Where the user came from, if it is this site and not this page; else the
    overview."""
    referer = request.headers.get("referer", "")
    same_site = url_has_allowed_host_and_scheme(
        referer,
        allowed_hosts={request.get_host()},
        require_https=request.is_secure(),
    )
    if referer and same_site and not referer.endswith(request.get_full_path()):
        return referer
    return reverse("dashboard:overview")


def _reason(exception: Exception | None, default: str) -> str:
    # Http404 and PermissionDenied raised bare carry no message (or Django's
    # technical one for a failed resolve, a dict): show ours then.
    message = exception.args[0] if exception and exception.args else ""
    if isinstance(message, str | Promise) and str(message):
        return str(message)
    return default


def permission_denied(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    """403 with the reason the view gave and a way back."""
    reason = _reason(exception, _("Your role does not allow this."))
    return render(
        request,
        "403.html",
        {"reason": reason, "back_url": _back_url(request)},
        status=403,
    )


def page_not_found(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    """404 that does not say whether the object exists in another product."""
    return render(
        request,
        "404.html",
        {"request_path": request.path, "back_url": _back_url(request)},
        status=404,
    )


class PlainRefusals(logging.Filter):
    """Logs a refused request (PermissionDenied) as one line, without the
    traceback Django's request logger attaches: it is an expected answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True
