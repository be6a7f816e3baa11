"""Celery entry points of the brokers app (none left: subscription actions run in
the actions app, history pruning in the history app, under their old names)."""
