"""Top-level routes."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularSwaggerSplitView

from brokers import urls as broker_urls
from history import urls as history_urls
from mqttadmin import accounts, security, timezones, views
from mqttadmin.api.schema import SchemaView
from observe import urls as observe_urls

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    # Pages link the icon; the API's browsable pages and bookmarks ask here.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"))),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/security/", security.account_security, name="account-security"),
    path("account/password/", accounts.account_password, name="account-password"),
    path(
        "account/sessions/end-others/",
        security.account_sessions_end_others,
        name="account-sessions-end-others",
    ),
    path(
        "account/invite/<uidb64>/<token>/",
        accounts.InviteAcceptView.as_view(),
        name="account-invite",
    ),
    path("account/time-zone/", timezones.account_time_zone, name="account-time-zone"),
    path("products/", views.product_list, name="product-list"),
    path("products/switch/", views.product_switch, name="product-switch"),
    path("products/<int:pk>/", views.product_detail, name="product-detail"),
    path(
        "products/<int:pk>/members/<int:user_id>/",
        views.member_update,
        name="member-update",
    ),
    path("audit/", views.audit_list, name="audit"),
    # The broker page's namespace also holds the routes of apps that serve its tabs.
    path(
        "brokers/",
        include(
            (
                [
                    *broker_urls.urlpatterns,
                    *history_urls.urlpatterns,
                    *observe_urls.urlpatterns,
                ],
                "brokers",
            )
        ),
    ),
    path("brokers/<int:pk>/acl/", include("acl.urls")),
    path("devices/", include("devices.urls")),
    path("admin/", admin.site.urls),
    # Namespaced: the API's route names (`product-list`, ...) never shadow a page's.
    path("api/v1/", include(("mqttadmin.api.urls", "api"), namespace="api")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path(
        "api/docs/",
        # The split view serves its init script as a file: no inline script (CSP).
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", template_name="mqttadmin/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("", include("dashboard.urls")),
]

# Styled error pages with the reason and a way back (mqttadmin.errors); 500 stays
# Django's, rendering templates/500.html without a request.
handler403 = "mqttadmin.errors.permission_denied"
handler404 = "mqttadmin.errors.page_not_found"
