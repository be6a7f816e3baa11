"""The API's list pagination."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """`?limit=&offset=` with a ceiling on `limit`: a larger one is served as the
    ceiling (DRF's rule for max_limit), never handed to the database, where a
    number past 64 bits fails the query. Offsets past the end already answer an
    empty page before any query slices."""

    default_limit = 100
    max_limit = 1000
