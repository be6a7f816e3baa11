"""MQTT Admin: a self-hosted admin portal for MQTT infrastructure."""

from mqttadmin.celery import app as celery_app

__all__ = ["celery_app"]
