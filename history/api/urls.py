"""Routes of the history, topics and retained endpoints under /api/v1/brokers/."""

from django.urls import path

from history.api import views as history

urlpatterns = [
    path(
        "brokers/<int:pk>/messages/",
        history.MessagesView.as_view(),
        name="broker-messages",
    ),
    path(
        "brokers/<int:pk>/messages/<int:message_id>/",
        history.MessageDetailView.as_view(),
        name="broker-message-detail",
    ),
    path(
        "brokers/<int:pk>/topics/", history.TopicsView.as_view(), name="broker-topics"
    ),
    path(
        "brokers/<int:pk>/topics/<int:topic_id>/",
        history.TopicDetailView.as_view(),
        name="broker-topic-detail",
    ),
    path(
        "brokers/<int:pk>/retained/",
        history.RetainedView.as_view(),
        name="broker-retained",
    ),
]
