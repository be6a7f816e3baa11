"""Broker pages. Tabs of the broker page are `?tab=` of `detail`."""

from django.urls import path

from brokers.views import connections, publish, subscriptions

app_name = "brokers"

urlpatterns = [
    path("", connections.broker_list, name="list"),
    path("new/", connections.broker_create, name="create"),
    # The same name twice: reverse picks the one for the arguments given.
    path("test/", connections.broker_test, name="test"),
    path("<int:pk>/", connections.broker_detail, name="detail"),
    path("<int:pk>/edit/", connections.broker_edit, name="edit"),
    path("<int:pk>/test/", connections.broker_test, name="test"),
    path("<int:pk>/delete/", connections.broker_delete, name="delete"),
    path("<int:pk>/control/", connections.broker_control, name="control"),
    path("<int:pk>/publish/", publish.broker_publish, name="publish"),
    path("<int:pk>/templates/", publish.template_save, name="template-save"),
    path(
        "<int:pk>/templates/<int:tid>/delete/",
        publish.template_delete,
        name="template-delete",
    ),
    path(
        "<int:pk>/subscriptions/",
        subscriptions.subscription_create,
        name="subscription-create",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/toggle/",
        subscriptions.subscription_toggle,
        name="subscription-toggle",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/delete/",
        subscriptions.subscription_delete,
        name="subscription-delete",
    ),
    # Subscriptions tab: the editor with actions, the dry run, the table's writes.
    path(
        "<int:pk>/subscriptions/new/",
        subscriptions.subscription_edit,
        name="subscription-new",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/edit/",
        subscriptions.subscription_edit,
        name="subscription-edit",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/dry-run/",
        subscriptions.subscription_dry_run,
        name="subscription-dry-run",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/tab-toggle/",
        subscriptions.subscription_tab_toggle,
        name="subscription-tab-toggle",
    ),
    path(
        "<int:pk>/subscriptions/<int:sid>/tab-delete/",
        subscriptions.subscription_tab_delete,
        name="subscription-tab-delete",
    ),
]
