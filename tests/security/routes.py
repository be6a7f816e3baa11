"""Every HTTP route of the portal, and how to fill its URL kwargs from a seeded tenant.

The walk is over `get_resolver()`, so a route added anywhere shows up here; a route
whose kwargs this module cannot fill is reported by `unknown_routes()` and fails the
tenant matrix until it is added to `OBJECT_FOR` (or matches a generic rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

API_PREFIX = "api/v1/"

# Routes that belong to no product: auth, health, documentation, the user's own
# account. Tenant isolation does not apply; other tests cover them.
GLOBAL_ROUTES = {
    "healthz",
    "login",
    "logout",
    "account-security",
    "account-password",
    "account-sessions-end-others",
    "account-invite",
    "api-token",
    "api-sessions",
    "api-root",
    "schema",
    "api-docs",
}
# A user's own session: filled with one of the requesting user's sessions.
OWN_ROUTES = {"api-session"}

# (route name, kwarg) -> the tenant object whose pk fills it.
OBJECT_FOR: dict[tuple[str, str], str] = {
    ("product-detail", "pk"): "product",
    ("member-update", "pk"): "product",
    ("member-update", "user_id"): "member",
    ("product-member", "pk"): "product",
    ("product-member", "user_id"): "member",
    ("product-members", "pk"): "product",
    ("brokers:topic-panel", "tid"): "topic",
    ("brokers:topic-annotate", "tid"): "topic",
    ("brokers:template-delete", "tid"): "template",
    ("broker-topic-detail", "topic_id"): "topic",
    ("broker-message-detail", "message_id"): "message",
    ("broker-mqtt-user", "pk"): "mqtt_user",
    ("broker-mqtt-role", "pk"): "mqtt_role",
    ("acl:user-edit", "uid"): "mqtt_user",
    ("acl:user-toggle", "uid"): "mqtt_user",
    ("acl:user-delete", "uid"): "mqtt_user",
    ("acl:role-edit", "rid"): "mqtt_role",
    ("acl:role-delete", "rid"): "mqtt_role",
    ("devices:import-detail", "pk"): "device_import",
    ("devices:rule-delete", "rid"): "rule",
    ("dashboard:alert-ack", "pk"): "alert",
    ("mqtt-config-subscription", "sub_id"): "subscription",
}
# Generic rules by kwarg name, then by the route's path prefix for `pk`.
OBJECT_FOR_KWARG = {
    "broker_pk": "broker",
    "sid": "subscription",
    "sub_id": "subscription",
    "topic_id": "topic",
    "user_id": "member",
}
OBJECT_FOR_PK_PREFIX = [
    ("products/", "product"),
    ("brokers/", "broker"),
    ("devices/", "device"),
    (API_PREFIX + "products/", "product"),
    (API_PREFIX + "brokers/", "broker"),
    (API_PREFIX + "subscriptions/", "subscription"),
    (API_PREFIX + "publish-templates/", "template"),
    (API_PREFIX + "devices/", "device"),
    (API_PREFIX + "alert-rules/", "rule"),
    (API_PREFIX + "alerts/", "alert"),
]

# Well-formed bodies for the API's create routes, naming objects of `tenant`, so a
# refusal is about the role or the product, not a missing field.
CREATE_BODIES: dict[str, Any] = {
    "broker-list": lambda t: {
        "product": t["product"].pk,
        "name": "created",
        "host": "127.0.0.1",
        "port": 1883,
    },
    "subscription-list": lambda t: {
        "broker": t["broker"].pk,
        "name": "created",
        "topic_filter": "created/#",
    },
    "publish-template-list": lambda t: {
        "broker": t["broker"].pk,
        "name": "created",
        "topic": "created/cmd",
    },
    "device-list": lambda t: {
        "product": t["product"].pk,
        "broker": t["broker"].pk,
        "device_id": "created",
        "name": "created",
        "topic": "created/d",
    },
    "alert-rule-list": lambda t: {
        "product": t["product"].pk,
        "device": t["device"].pk,
        "key": "temp",
        "op": ">",
        "threshold": 1,
    },
}
CREATE_QUERY_PARAMS: dict[str, Any] = {
    "device-import": lambda t: f"?product={t['product'].pk}&broker={t['broker'].pk}",
}

ALL_METHODS = ("get", "post", "put", "patch", "delete")
WRITE_METHODS = ("post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    name: str  # namespaced, e.g. "brokers:detail"
    path: str  # the pattern's route, e.g. "brokers/<int:pk>/"
    kwargs: tuple[str, ...]
    methods: tuple[str, ...]  # what the view answers (GET for plain views: unknown)
    is_api: bool
    pattern: URLPattern

    def url(self, values: dict[str, Any] | None = None) -> str:
        """The path with kwargs filled in (names repeat between pages and API, so
        `reverse` by name would be ambiguous)."""
        values = values or {}

        def fill(match: re.Match[str]) -> str:
            return str(values[match.group(1)])

        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", fill, self.path)
        path = re.sub(r"<(?:\w+:)?(\w+)>", fill, path)
        return "/" + path.replace("\\", "")


def _methods(callback: Any) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)
    if actions:
        return tuple(m for m in ALL_METHODS if m in actions)
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is not None:
        names = getattr(view_class, "http_method_names", ALL_METHODS)
        found = tuple(m for m in ALL_METHODS if m in names and hasattr(view_class, m))
        return found or ("get",)
    # A function view: GET and POST are tried; 405 says it does not take one.
    return ("get", "post")


def _walk(
    patterns: list[Any], prefix: str = "", namespace: str = ""
) -> list[tuple[str, str, URLPattern]]:
    found: list[tuple[str, str, URLPattern]] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = namespace + (f"{entry.namespace}:" if entry.namespace else "")
            found += _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern) and entry.name:
            found.append((namespace + entry.name, prefix + str(entry.pattern), entry))
    return found


def all_routes() -> list[Route]:
    """Every named route outside the Django admin, without format-suffix copies."""
    routes: dict[str, Route] = {}
    for name, path, pattern in _walk(get_resolver().url_patterns):
        if name.startswith("admin:") or path.startswith("admin/"):
            continue
        # The whole path's kwargs: an include's prefix (brokers/<int:pk>/acl/) has some.
        kwargs = tuple(
            dict.fromkeys(re.findall(r"\(\?P<(\w+)>|<(?:\w+:)?(\w+)>", path))
        )
        kwargs = tuple(dict.fromkeys(a or b for a, b in kwargs))
        if "format" in kwargs:
            continue
        route = Route(
            # The API's routes are in the `api` namespace; the tables of this
            # module name them as their views do, and paths tell pages apart.
            name=name.removeprefix("api:"),
            path=path.replace("^", "").replace("$", ""),
            kwargs=kwargs,
            methods=_methods(pattern.callback),
            is_api=path.startswith(API_PREFIX) or path.startswith("api/"),
            pattern=pattern,
        )
        # The same name twice (e.g. brokers:test with and without pk): keep both.
        routes[f"{name}|{path}"] = route
    return list(routes.values())


def object_for(route: Route, kwarg: str) -> str | None:
    """The tenant object that fills `kwarg` of `route`, or None when unknown."""
    if (route.name, kwarg) in OBJECT_FOR:
        return OBJECT_FOR[(route.name, kwarg)]
    if kwarg in OBJECT_FOR_KWARG:
        return OBJECT_FOR_KWARG[kwarg]
    if kwarg == "pk":
        for prefix, key in sorted(OBJECT_FOR_PK_PREFIX, key=lambda p: -len(p[0])):
            if route.path.startswith(prefix):
                return key
    return None


def unknown_routes() -> list[str]:
    """Routes the matrix cannot fill, as "name (path)"."""
    unknown = []
    for route in all_routes():
        if route.name in GLOBAL_ROUTES | OWN_ROUTES:
            continue
        if any(object_for(route, kwarg) is None for kwarg in route.kwargs):
            unknown.append(f"{route.name} ({route.path})")
    return unknown


# Kwargs that carry a signed secret, not an object: a forged value, so a walk
# sees the page's refusal (an invite link that does not work).
FORGED_KWARGS = {("account-invite", "uidb64"): "MQ", ("account-invite", "token"): "x-y"}


def kwargs_for(route: Route, tenant: Any, member: Any) -> dict[str, Any]:
    """URL kwargs of `route` for objects of `tenant`; `member` fills user ids."""
    values: dict[str, Any] = {}
    for kwarg in route.kwargs:
        if (route.name, kwarg) in FORGED_KWARGS:
            values[kwarg] = FORGED_KWARGS[route.name, kwarg]
            continue
        key = object_for(route, kwarg)
        if key is None:
            raise LookupError(f"no rule fills {kwarg} of {route.name}")
        values[kwarg] = member.pk if key == "member" else tenant[key].pk
    return values


def is_page(route: Route) -> bool:
    """HTML for browsers: the portal's pages and the API docs page."""
    return not route.is_api or route.name == "api-docs"


def tenant_routes() -> list[Route]:
    return [
        r for r in all_routes() if r.name not in GLOBAL_ROUTES | OWN_ROUTES and r.kwargs
    ]


def collection_routes() -> list[Route]:
    """Product-scoped routes without kwargs: lists and creation forms."""
    return [
        r
        for r in all_routes()
        if r.name not in GLOBAL_ROUTES | OWN_ROUTES and not r.kwargs
    ]
