"""Pages of the broker's Users & ACL tab, under /brokers/<pk>/acl/."""

from django.urls import path

from acl import views

app_name = "acl"

urlpatterns = [
    path("", views.acl_tab, name="tab"),
    path("users/new/", views.user_form, name="user-create"),
    path("users/<int:uid>/", views.user_form, name="user-edit"),
    path("users/<int:uid>/toggle/", views.user_toggle, name="user-toggle"),
    path("users/<int:uid>/delete/", views.user_delete, name="user-delete"),
    path("roles/new/", views.role_form, name="role-create"),
    path("roles/<int:rid>/", views.role_form, name="role-edit"),
    path("roles/<int:rid>/delete/", views.role_delete, name="role-delete"),
    path("management/", views.management_form, name="management"),
    path("sync/", views.acl_sync, name="sync"),
    path("export/", views.acl_export, name="export"),
    path("lifecycle/", views.lifecycle, name="lifecycle"),
]
