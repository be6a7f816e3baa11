"""The API's renderers: JSON, and DRF's browsable pages under their own policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BrowsableAPIRenderer


class BrowsableAPIRendererWithStyles(BrowsableAPIRenderer):
    """DRF's browsable pages with the inline styles their templates carry (style
    attributes, the code highlighter's <style>). The allowance is set on these
    responses only (django-csp's per-response update): the portal's own pages
    keep `style-src 'self'`. Scripts stay files from 'self', as DRF serves them."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> Any:
        response = (renderer_context or {}).get("response")
        if response is not None:
            response._csp_update = {"style-src": ["'unsafe-inline'"]}
        return super().render(data, accepted_media_type, renderer_context)
