from django.urls import path

from alerts import views as alert_views
from dashboard import views

app_name = "dashboard"

# The alerts page is the alerts app's; its URL names stay `dashboard:alerts` and
# `dashboard:alert-ack`, which templates and bookmarks already use.
urlpatterns = [
    path("", views.overview, name="overview"),
    path("alerts/", alert_views.alerts, name="alerts"),
    path("alerts/<int:pk>/ack/", alert_views.alert_ack, name="alert-ack"),
]
