"""API errors as `{"field": ["message"]}`, including Django's ValidationError."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail: Any = (
            exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        )
        exc = exceptions.ValidationError(detail=detail)
    return exception_handler(exc, context)
