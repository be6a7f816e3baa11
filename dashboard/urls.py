from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/<int:pk>/ack/", views.alert_ack, name="alert-ack"),
]
