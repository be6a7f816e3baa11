"""Enumerations of the devices app."""

from __future__ import annotations

import operator
from collections.abc import Callable

from django.db import models
from django.utils.translation import gettext_lazy as _


class DeviceStatus(models.TextChoices):
    """What the availability topic (or, without one, the telemetry) last said."""

    ONLINE = "online", _("Online")
    OFFLINE = "offline", _("Offline")
    UNKNOWN = "unknown", _("Unknown")


class RuleOperator(models.TextChoices):
    GT = ">", _("greater than")
    GE = ">=", _("at least")
    LT = "<", _("less than")
    LE = "<=", _("at most")
    EQ = "==", _("equal to")
    NE = "!=", _("not equal to")


OPERATORS: dict[str, Callable[[float, float], bool]] = {
    RuleOperator.GT: operator.gt,
    RuleOperator.GE: operator.ge,
    RuleOperator.LT: operator.lt,
    RuleOperator.LE: operator.le,
    RuleOperator.EQ: operator.eq,
    RuleOperator.NE: operator.ne,
}


class ImportState(models.TextChoices):
    PENDING = "pending", _("Waiting")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
