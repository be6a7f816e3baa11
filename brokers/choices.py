"""Enumerations of the brokers app."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Transport(models.TextChoices):
    TCP = "tcp", _("TCP")
    WEBSOCKETS = "websockets", _("WebSockets")


class Protocol(models.TextChoices):
    MQTT_311 = "3.1.1", _("MQTT 3.1.1")
    MQTT_5 = "5", _("MQTT 5")


class ConnectionState(models.TextChoices):
    CONNECTED = "connected", _("Connected")
    CONNECTING = "connecting", _("Connecting")
    DISCONNECTED = "disconnected", _("Disconnected")
    ERROR = "error", _("Error")


class PayloadEncoding(models.TextChoices):
    UTF8 = "utf8", _("Text (UTF-8)")
    BASE64 = "base64", _("Base64")
    JSON = "json", _("JSON")


class ControlAction(models.TextChoices):
    CONNECT = "connect", _("Connect")
    DISCONNECT = "disconnect", _("Disconnect")
    RECONNECT = "reconnect", _("Reconnect")
