"""Sorting and searching the portal's long lists: one reading of `?sort=` and
`?q=` for every list (brokers, devices, subscriptions, audit), whitelisted per
list, and the links that keep them (column headers, pages, polls).

`?sort=name` sorts ascending, `?sort=-name` descending. A column the list does
not offer is ignored and the list keeps its default order: a stale bookmark or a
hand-edited link still shows the list (docs/ui.md). `?q=` keeps the rows where
every word appears (case-insensitive) in one of the list's search fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db.models import F, Func, Model, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.http import HttpRequest
from django.utils.http import urlencode

M = TypeVar("M", bound=Model)
# A field name, or an expression such as Lower("name") (names sort regardless of case).
SortField = str | Func

# Longer searches are cut: a word list this long matches nothing useful anyway.
MAX_SEARCH_CHARS = 100
# What the list's own parameters are; every other one (filters, the tab) is kept.
OWN_PARAMS = ("sort", "q", "page")


@dataclass(frozen=True)
class SortHeader:
    """A column header's link and state, for `partials/sort_header.html`."""

    url: str
    aria_sort: str  # "ascending", "descending" or "none"
    arrow: str


@dataclass(frozen=True)
class Listing:
    """One list's sort and search as asked (already checked against its columns)."""

    path: str
    # The id of the box a header click or a search refreshes (hx-target).
    target: str
    columns: Mapping[str, Sequence[SortField]]
    default: str
    sort: str
    q: str
    search_fields: Sequence[str]
    kept: Mapping[str, str] = field(default_factory=dict)
    descending_first: frozenset[str] = frozenset()

    @property
    def sort_key(self) -> str:
        return self.sort.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    def ordering(self) -> list[OrderBy]:
        """The ORDER BY of the sort, empty values last either way."""
        ordering = []
        for name in self.columns[self.sort_key]:
            expression = F(name) if isinstance(name, str) else name
            ordering.append(
                expression.desc(nulls_last=True)
                if self.descending
                else expression.asc(nulls_last=True)
            )
        return ordering

    def search(self) -> Q:
        condition = Q()
        for word in self.q.split():
            any_field = Q()
            for name in self.search_fields:
                any_field |= Q(**{f"{name}__icontains": word})
            condition &= any_field
        return condition

    def apply(self, queryset: QuerySet[M]) -> QuerySet[M]:
        """The rows that match the search, in the asked order (then by id, so
        that pages never repeat or skip a row of equal values)."""
        if self.q:
            queryset = queryset.filter(self.search())
        return queryset.order_by(*self.ordering(), "pk")

    def querystring(self, **changes: str) -> str:
        """The list's state as a query string (without the page), with changes."""
        params: dict[str, str] = dict(self.kept)
        if self.sort != self.default:
            params["sort"] = self.sort
        if self.q:
            params["q"] = self.q
        params.update(changes)
        return urlencode({name: value for name, value in params.items() if value})

    @property
    def state(self) -> str:
        """For links that keep sort and search: pages and polls."""
        return self.querystring()

    @property
    def url(self) -> str:
        query = self.querystring()
        return f"{self.path}?{query}" if query else self.path

    @property
    def headers(self) -> dict[str, SortHeader]:
        """Per column: the link that sorts by it (again: the other way round)."""
        headers = {}
        for key in self.columns:
            if key == self.sort_key:
                target = key if self.descending else f"-{key}"
                aria, arrow = (
                    ("descending", "▼") if self.descending else ("ascending", "▲")
                )
            else:
                target = f"-{key}" if key in self.descending_first else key
                aria, arrow = "none", ""
            query = self.querystring(sort=target)
            headers[key] = SortHeader(f"{self.path}?{query}", aria, arrow)
        return headers


def listing_from(
    request: HttpRequest,
    *,
    columns: Mapping[str, Sequence[SortField]],
    default: str,
    search: Sequence[str],
    target: str,
    path: str | None = None,
    descending_first: Sequence[str] = (),
) -> Listing:
    """The list's sort and search from the request's query: `columns` maps a
    sort key to the fields (or expressions) it orders by, `search` names the
    fields `?q=` looks in."""
    sort = request.GET.get("sort", "").strip()
    if sort.removeprefix("-") not in columns:
        sort = default
    q = " ".join(request.GET.get("q", "").split())[:MAX_SEARCH_CHARS]
    kept = {
        name: str(value)
        for name, value in request.GET.items()
        if name not in OWN_PARAMS and value
    }
    return Listing(
        path=path if path is not None else request.path,
        target=target,
        columns=columns,
        default=default,
        sort=sort,
        q=q,
        search_fields=search,
        kept=kept,
        descending_first=frozenset(descending_first),
    )


def htmx_target(request: Any) -> str:
    """The id of the element an htmx request swaps ('' without htmx)."""
    htmx = getattr(request, "htmx", None)
    return (htmx.target or "") if htmx else ""
