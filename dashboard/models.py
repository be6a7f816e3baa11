"""The dashboard owns no model: alerts live in the alerts app (alerts.models).

Re-exported for code not yet moved to `alerts.models`; new code imports from there.
"""

from alerts.models import Alert, AlertQuerySet, AlertState, Severity

__all__ = ["Alert", "AlertQuerySet", "AlertState", "Severity"]
