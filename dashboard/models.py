"""The dashboard owns no model: alerts live in the alerts app (alerts.models)."""
