"""Enumerations of the acl app."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Management(models.TextChoices):
    """How the portal applies MQTT users and ACLs to a broker."""

    NONE = "none", _("Not managed")
    DYNSEC = "dynsec", _("Dynamic Security plugin")
    FILES = "files", _("Password and ACL files")


class ReloadMethod(models.TextChoices):
    """How the broker is told to reload (and restarted)."""

    SIGNAL = "signal", _("SIGHUP to the pid in a pid file")
    COMMAND = "command", _("A command (e.g. systemctl reload mosquitto)")


class Access(models.TextChoices):
    """What a rule grants (or denies) on its topic filter."""

    READ = "read", _("Read (subscribe, receive)")
    WRITE = "write", _("Write (publish)")
    READWRITE = "readwrite", _("Read and write")
    DENY = "deny", _("Deny")


class SyncState(models.TextChoices):
    """Whether the broker holds what the portal wants (last apply or sync)."""

    APPLIED = "applied", _("Applied")
    FAILED = "failed", _("Failed")


class LifecycleAction(models.TextChoices):
    RELOAD = "reload", _("Reload")
    RESTART = "restart", _("Restart")
