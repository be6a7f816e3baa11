"""Broker pages. Tabs of the broker page are `?tab=` of `detail`."""

from django.urls import path

from brokers import views

app_name = "brokers"

urlpatterns = [
    path("", views.broker_list, name="list"),
    path("new/", views.broker_create, name="create"),
    # The same name twice: reverse picks the one for the arguments given.
    path("test/", views.broker_test, name="test"),
    path("<int:pk>/", views.broker_detail, name="detail"),
    path("<int:pk>/edit/", views.broker_edit, name="edit"),
    path("<int:pk>/test/", views.broker_test, name="test"),
    path("<int:pk>/delete/", views.broker_delete, name="delete"),
    path("<int:pk>/control/", views.broker_control, name="control"),
    path("<int:pk>/publish/", views.broker_publish, name="publish"),
    path("<int:pk>/templates/", views.template_save, name="template-save"),
    path(
        "<int:pk>/templates/<int:tid>/delete/",
        views.template_delete,
        name="template-delete",
    ),
    path(
        "<int:pk>/subscriptions/",
        views.subscription_create,
        name="subscription-create",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/toggle/",
        views.subscription_toggle,
        name="subscription-toggle",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/delete/",
        views.subscription_delete,
        name="subscription-delete",
    ),
    # Subscriptions tab: the editor with actions, the dry run, the table's writes.
    path(
        "<int:pk>/subscriptions/new/",
        views.subscription_edit,
        name="subscription-new",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/edit/",
        views.subscription_edit,
        name="subscription-edit",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/dry-run/",
        views.subscription_dry_run,
        name="subscription-dry-run",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/tab-toggle/",
        views.subscription_tab_toggle,
        name="subscription-tab-toggle",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/tab-delete/",
        views.subscription_tab_delete,
        name="subscription-tab-delete",
    ),
]
