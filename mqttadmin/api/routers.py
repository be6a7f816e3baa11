"""The routers every app's `api/urls.py` builds its `urlpatterns` with.

Each app owns its routes; `mqttadmin.api.urls` includes every `<app>.api.urls` the
same way and serves the API root, which lists the apps' top-level collections.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import Any

from rest_framework.routers import DefaultRouter, Route, SimpleRouter


class AppRouter(DefaultRouter):
    """An app's top-level viewsets (`/api/v1/<prefix>/`, with `.json` suffixes);
    the one API root is the core's (`ApiRootRouter`)."""

    include_root_view = False


class NestedRouter(SimpleRouter):
    """Viewsets under another object's URL (`brokers/<int:broker_pk>/mqtt-users/`).

    Routes are named `<basename>s` (list) and `<basename>` (detail), e.g.
    `broker-mqtt-users` and `broker-mqtt-user`.
    """

    routes = [
        Route(
            url=r"^{prefix}{trailing_slash}$",
            mapping={"get": "list", "post": "create"},
            name="{basename}s",
            detail=False,
            initkwargs={"suffix": "List"},
        ),
        Route(
            url=r"^{prefix}/{lookup}{trailing_slash}$",
            mapping={
                "get": "retrieve",
                "put": "update",
                "patch": "partial_update",
                "delete": "destroy",
            },
            name="{basename}",
            detail=True,
            initkwargs={"suffix": "Instance"},
        ),
    ]

    def __init__(self) -> None:
        super().__init__(use_regex_path=False)


class ApiRootRouter(DefaultRouter):
    """The core's router; its API root lists its own collections, then those of
    the apps named in `listed` (each `<app>.api.urls` whose `router` is an
    AppRouter)."""

    def __init__(self, listed: Sequence[str] = ()) -> None:
        super().__init__()
        self.listed = listed

    def get_api_root_view(self, api_urls: Any = None) -> Any:
        routers: list[SimpleRouter] = [self]
        # Nested routes need an id and plain paths are no collections: the root
        # lists the top-level routers only.
        for app in self.listed:
            app_router = getattr(import_module(f"{app}.api.urls"), "router", None)
            if isinstance(app_router, AppRouter):
                routers.append(app_router)
        api_root_dict = {}
        for router in routers:
            list_name = router.routes[0].name
            for prefix, _viewset, basename in router.registry:
                api_root_dict[prefix] = list_name.format(basename=basename)
        return self.APIRootView.as_view(api_root_dict=api_root_dict)
