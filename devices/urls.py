"""Device pages."""

from django.urls import path

from devices import views

app_name = "devices"

urlpatterns = [
    path("", views.device_list, name="list"),
    path("new/", views.device_create, name="create"),
    path("import/", views.device_import, name="import"),
    path("import/<int:pk>/", views.import_detail, name="import-detail"),
    path("<int:pk>/", views.device_detail, name="detail"),
    path("<int:pk>/edit/", views.device_edit, name="edit"),
    path("<int:pk>/delete/", views.device_delete, name="delete"),
    path("<int:pk>/command/", views.device_command, name="command"),
    path("<int:pk>/rules/", views.rule_create, name="rule-create"),
    path("<int:pk>/rules/<int:rid>/delete/", views.rule_delete, name="rule-delete"),
]
