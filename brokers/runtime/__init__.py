"""The long-lived MQTT connection runtime (see docs/architecture.md, "MQTT runtime").

`Runtime(owner).start()` runs it in threads of the current process: `manage.py
serve` and Celery workers started with `--mqtt-runtime` do so.
"""

from brokers.runtime.manager import Runtime

__all__ = ["Runtime"]
