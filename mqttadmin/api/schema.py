"""The OpenAPI document's view: YAML by default, JSON for `?format=json`.

The API turns DRF's `?format=` override off (URL_FORMAT_OVERRIDE = None: a
`format` query parameter is left to filters), so drf-spectacular's own view
ignored `?format=json` and answered YAML. This view honours it for the schema
alone; `Accept: application/json` works as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from drf_spectacular.views import SpectacularAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

SCHEMA_FORMAT_PARAMETER = "format"


class SchemaFormatNegotiation(DefaultContentNegotiation):
    """Picks the renderer named by `?format=` (json, yaml), else by Accept."""

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        requested = format_suffix or request.query_params.get(SCHEMA_FORMAT_PARAMETER)
        return super().select_renderer(request, renderers, requested or None)


class SchemaView(SpectacularAPIView):
    """`/api/schema/`: the OpenAPI document, `?format=json` or `?format=yaml`."""

    content_negotiation_class = SchemaFormatNegotiation
