"""Routes of the Activity and Topics tabs' fragments and writes.

They keep their `brokers:` names: mqttadmin/urls.py mounts these patterns in the
broker page's namespace, beside brokers/urls.py.
"""

from django.urls import path

from history import views as history_views

urlpatterns = [
    # Activity and Topics tabs: their fragments and writes.
    path(
        "<int:pk>/history/delete/",
        history_views.broker_history_delete,
        name="history-delete",
    ),
    path("<int:pk>/topics/<int:tid>/", history_views.topic_panel, name="topic-panel"),
    path(
        "<int:pk>/topics/<int:tid>/annotate/",
        history_views.topic_annotate,
        name="topic-annotate",
    ),
    path("<int:pk>/retained/", history_views.broker_retained, name="retained"),
    path(
        "<int:pk>/retained/clear/",
        history_views.broker_retained_clear,
        name="retained-clear",
    ),
]
