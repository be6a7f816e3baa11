"""The Celery application; tasks are discovered in every app's tasks.py.

`celery -A mqttadmin worker --mqtt-runtime` also runs the MQTT runtime in the
worker's main process (the runtime app's bootstep, runtime.worker).
"""

from __future__ import annotations

import os

from celery import Celery

from runtime.worker import install as install_mqtt_runtime

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqttadmin.settings")

app = Celery("mqttadmin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
install_mqtt_runtime(app)
