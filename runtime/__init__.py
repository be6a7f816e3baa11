"""The long-lived MQTT connection runtime (see docs/architecture.md, "MQTT runtime").

`runtime.manager.Runtime(owner).start()` runs it in threads of the current process:
`manage.py serve` (registered by this app's AppConfig) and Celery workers started
with `--mqtt-runtime` (runtime.worker's bootstep) do so.
"""
