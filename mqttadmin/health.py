"""Health checks beyond the database, used by /healthz."""

from __future__ import annotations

from django.conf import settings


def extra_checks() -> dict[str, str]:
    parts: dict[str, str] = {}
    if settings.REDIS_URL:
        parts["redis"] = _redis_state(settings.REDIS_URL)
    parts["channel_layer"] = "ok" if settings.CHANNEL_LAYERS else "error: not set"
    return parts


def _redis_state(url: str) -> str:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        return "ok"
    except redis.RedisError as exc:
        return f"error: {exc.__class__.__name__}"
