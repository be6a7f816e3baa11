"""WSGI entry point (HTTP only; use asgi for WebSockets)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqttadmin.settings")
application = get_wsgi_application()
