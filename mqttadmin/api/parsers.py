"""The API's JSON parser: bounded (size, depth) and refusing NUL characters.

DRF's JSONParser reads a body of any size, raises RecursionError (a 500) on
deeply nested JSON and lets "\\u0000" through to the database (a DataError on
PostgreSQL). This one reads at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes, parses with
`mqttadmin.lib.payloads.parse_json` (64 levels at most, no NaN or Infinity) and
refuses a NUL anywhere with a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from mqttadmin.input_guard import first_nul_path, nul_message
from mqttadmin.lib.payloads import json_problem, parse_json

DEFAULT_BODY_BYTES = 2_621_440  # Django's DATA_UPLOAD_MAX_MEMORY_SIZE default


def body_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or DEFAULT_BODY_BYTES


class BoundedJSONParser(JSONParser):
    """JSON bodies within bounds; a NUL in any string or key is a 400."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = body_limit()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ParseError(_("The request body is larger than %d bytes.") % limit)
        parsed = parse_json(raw, max_bytes=limit)
        if parsed is None:
            raise ParseError(
                _("JSON parse error - %s") % json_problem(raw, max_bytes=limit)
            )
        where = first_nul_path(parsed.value)
        if where is not None:
            field = where.split(".", 1)[0].split("[", 1)[0] or "non_field_errors"
            raise ValidationError({field: [f"{where}: {nul_message()}"]})
        return parsed.value
