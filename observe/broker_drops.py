"""An alert when a broker drops messages, read from its `$SYS` counters.

Mosquitto drops a QoS 1/2 message for a subscriber whose in-flight window
(`max_inflight_messages`, 20 by default) and queue (`max_queued_messages`, 1000 by
default) are full, silently for that subscriber, and counts it in
`$SYS/broker/publish/messages/dropped`. The portal acknowledges a message only
after committing it, so its own subscription is such a subscriber under a burst.
When the counter grows, one alert per broker opens (through alerts.services) that
says what to raise; it resolves once the counter has stood still for
BROKER_DROPS_QUIET_S seconds.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.translation import gettext as _

from alerts.models import Alert, AlertState, Severity, alert_key
from alerts.services import alert_open, alert_resolve
from brokers.models import Broker

if TYPE_CHECKING:
    from observe.models import BrokerSysStats

DROPPED = "publish/messages/dropped"
DEFAULT_QUIET_S = 300.0


def drops_rule_key(broker_id: int) -> str:
    return alert_key("broker", broker_id, "dropped-messages")


def quiet_period() -> datetime.timedelta:
    """How long the counter stands still before the alert resolves."""
    seconds = float(getattr(settings, "BROKER_DROPS_QUIET_S", DEFAULT_QUIET_S))
    return datetime.timedelta(seconds=seconds)


def _counter(value: str | None) -> int | None:
    try:
        return int(value.split()[0]) if value else None
    except (ValueError, IndexError):
        return None


def drops_message(broker_name: str, dropped: int) -> str:
    # Since its previous report, not "in N s": the broker publishes its `$SYS`
    # counters one topic at a time, so the time between two readings of this one
    # is not known here.
    return _(
        "%(broker)s dropped %(count)d messages since its previous report: a subscriber "
        "(possibly the portal, which acknowledges a message only after storing it) "
        "had more unacknowledged QoS 1/2 messages than the broker keeps for it. "
        "Raise max_queued_messages (default 1000) and max_inflight_messages "
        "(default 20) in the broker's configuration, or slow the publishers down; "
        "a portal connection on MQTT 3.1.1 is held to that window, while on MQTT 5 "
        "the portal sets its own."
    ) % {"broker": broker_name, "count": dropped}


def check_dropped_messages(
    stats: BrokerSysStats,
    before: dict[str, str],
    seen_before: datetime.datetime | None,
    now: datetime.datetime,
) -> list[str]:
    """Compare the dropped counter in `stats.values` with the one in `before`
    (read at `seen_before`): open the broker's drop alert when it grew, resolve it
    once it has stood still for the quiet period. Returns the fields of `stats`
    it changed (the caller saves them)."""
    previous = _counter(before.get(DROPPED))
    current = _counter(stats.values.get(DROPPED))
    key = drops_rule_key(stats.broker_id)
    # A counter that went down is a restarted broker; a first reading has no
    # interval: neither says when the drops happened.
    dropped = (
        current - previous
        if previous is not None and current is not None and seen_before is not None
        else 0
    )
    if dropped > 0 and seen_before is not None:
        stats.drops_seen_at = now
        if not Alert.objects.filter(rule_key=key, state=AlertState.OPEN).exists():
            broker = (
                Broker.objects.filter(pk=stats.broker_id)
                .only("name", "product_id")
                .first()
            )
            if broker is not None:
                alert_open(
                    product_id=broker.product_id,
                    key=key,
                    subject=broker.name,
                    severity=Severity.WARNING,
                    message=drops_message(broker.name, dropped),
                    value=dropped,
                    threshold=0,
                )
        return ["drops_seen_at"]
    if stats.drops_seen_at is None or now - stats.drops_seen_at < quiet_period():
        return []
    for alert in Alert.objects.filter(rule_key=key, state=AlertState.OPEN):
        alert_resolve(alert, at=now)
    stats.drops_seen_at = None
    return ["drops_seen_at"]
