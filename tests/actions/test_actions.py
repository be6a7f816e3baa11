"""Subscription actions: validation, templates, dry run, execution and counters."""

from __future__ import annotations

import datetime
import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from actions.models import ActionRun
from actions.runner import run_action_batch, sweep_stale_runs
from alerts.models import Alert
from brokers.action_kinds import MessageContext, dry_run, validate_actions
from brokers.models import Subscription
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.factories import make_broker, make_subscription
from tests.services import free_port

pytestmark = pytest.mark.django_db


def subscription_with_actions(
    actions: list[dict[str, Any]], port: int = 1, **kw: Any
) -> Subscription:
    """A bare subscription row (unvalidated) with `actions`, on a new bare broker."""
    broker = make_broker(name="b", port=port, via_service=False, status="disconnected")
    return make_subscription(
        broker,
        name="s",
        topic_filter=kw.pop("topic_filter", "plant/#"),
        via_service=False,
        actions=actions,
        **kw,
    )


def deliver(subscription: Subscription, topic: str, payload: bytes) -> list[int]:
    """Ingest one message as the runtime would; returns the new action run ids."""
    before = set(ActionRun.objects.values_list("id", flat=True))
    store_batch(
        [
            ReceivedMessage(
                subscription.broker_id, topic, payload, 1, False, timezone.now()
            )
        ]
    )
    return sorted(set(ActionRun.objects.values_list("id", flat=True)) - before)


def sample(
    topic: str = "plant/boiler/temp", payload: bytes = b'{"value": 21.5}'
) -> MessageContext:
    return MessageContext(
        topic,
        payload,
        0,
        False,
        timezone.now(),
        {"id": 1, "name": "b"},
        {"id": 2, "name": "s"},
    )


@pytest.mark.parametrize(
    ("actions", "field"),
    [
        ([{"type": "sms"}], "actions[0].type"),
        ([{"type": "webhook", "url": "ftp://x"}], "actions[0].url"),
        (
            [{"type": "webhook", "url": "http://x", "method": "BREW"}],
            "actions[0].method",
        ),
        (
            [{"type": "webhook", "url": "http://x", "timeout_s": 600}],
            "actions[0].timeout_s",
        ),
        (
            [{"type": "webhook", "url": "http://x", "body": "{% if %}"}],
            "actions[0].body",
        ),
        ([{"type": "republish"}], "actions[0].topic"),
        ([{"type": "republish", "topic": "a", "qos": 3}], "actions[0].qos"),
        (
            [{"type": "alert", "value": "{{ payload.v }}", "op": "~", "threshold": 1}],
            "actions[0].op",
        ),
        (
            [{"type": "alert", "value": "1", "op": ">", "threshold": "x"}],
            "actions[0].threshold",
        ),
        (
            [{"type": "email", "to": ["not-an-address"], "subject": "s"}],
            "actions[0].to",
        ),
        (
            [{"type": "telemetry"}, {"type": "email", "to": "a@b.c"}],
            "actions[1].subject",
        ),
    ],
)
def test_invalid_actions_name_the_index_and_field(actions: list, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        validate_actions(actions)
    assert any(message.startswith(field) for message in error.value.messages)


def test_templates_render_in_the_dry_run() -> None:
    actions: list[dict[str, Any]] = [
        {
            "type": "webhook",
            "url": "http://sink/x",
            "body": '{"t": "{{ topic }}", "v": {{ payload.value }}}',
        },
        {
            "type": "republish",
            "topic": "out/{{ topic_levels.1 }}",
            "payload": "{{ payload.value }}",
        },
        {"type": "alert", "value": "{{ payload.value }}", "op": ">", "threshold": 20},
        {
            "type": "republish",
            "topic": "x",
            "payload": "{{ payload.value|no_such_filter }}",
        },
    ]
    report = dry_run(actions, sample())
    assert json.loads(report[0]["body"]) == {"t": "plant/boiler/temp", "v": 21.5}
    assert report[1]["topic"] == "out/boiler" and report[1]["payload"] == "21.5"
    assert report[2]["crossed"] is True and report[2]["would"] == "open"
    assert report[3]["ok"] is False and "template error" in report[3]["error"]


def test_webhook_gets_the_rendered_body_and_an_idempotency_key(http_sink) -> None:
    subscription = subscription_with_actions(
        [
            {
                "type": "webhook",
                "url": f"{http_sink.url}/hook",
                "body": '{"v": {{ payload.value }}}',
            }
        ]
    )
    runs = deliver(subscription, "plant/boiler/temp", b'{"value": 7}')
    assert run_action_batch(runs) == {"executed": 1, "failed": 0}
    request = http_sink.requests[0]
    assert request.path == "/hook" and json.loads(request.body) == {"v": 7}
    assert request.headers["Idempotency-Key"] == f"{runs[0]}-0"
    subscription.refresh_from_db()
    assert (subscription.messages_received, subscription.actions_executed) == (1, 1)


def test_webhook_retries_5xx_then_succeeds(http_sink) -> None:
    http_sink.statuses[:] = [503, 500]
    subscription = subscription_with_actions(
        [{"type": "webhook", "url": http_sink.url}]
    )
    runs = deliver(subscription, "plant/x", b"1")
    assert run_action_batch(runs) == {"executed": 1, "failed": 0}
    assert len(http_sink.requests) == 3
    assert len({r.headers["Idempotency-Key"] for r in http_sink.requests}) == 1


def test_webhook_4xx_fails_without_retry_and_keeps_the_error(http_sink) -> None:
    http_sink.statuses[:] = [404]
    subscription = subscription_with_actions(
        [{"type": "webhook", "url": http_sink.url}]
    )
    runs = deliver(subscription, "plant/x", b"1")
    assert run_action_batch(runs) == {"executed": 0, "failed": 1}
    assert len(http_sink.requests) == 1
    subscription.refresh_from_db()
    assert subscription.actions_failed == 1 and "HTTP 404" in subscription.last_error
    assert ActionRun.objects.get(pk=runs[0]).state == "failed"


def test_unreachable_webhook_fails_after_its_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    subscription = subscription_with_actions(
        [{"type": "webhook", "url": url, "timeout_s": 1}]
    )
    runs = deliver(subscription, "plant/x", b"1")
    assert run_action_batch(runs) == {"executed": 0, "failed": 1}
    subscription.refresh_from_db()
    assert "after 4 attempts" in subscription.last_error


def test_a_run_done_once_is_not_repeated() -> None:
    subscription = subscription_with_actions(
        [{"type": "email", "to": "ops@example.com", "subject": "x"}]
    )
    runs = deliver(subscription, "plant/x", b"1")
    run_action_batch(runs)
    run_action_batch(runs)  # a redelivered task
    assert len(mail.outbox) == 1


def test_a_run_claimed_by_a_live_worker_is_neither_run_nor_swept_again() -> None:
    """Another worker holds the claim (it is still executing): a second task
    handed the same run skips it, and the sweep leaves it alone until the claim
    runs out; then it runs once."""
    subscription = subscription_with_actions(
        [{"type": "email", "to": "ops@example.com", "subject": "x"}]
    )
    runs = deliver(subscription, "plant/x", b"1")
    long_ago = timezone.now() - datetime.timedelta(minutes=10)
    ActionRun.objects.filter(pk__in=runs).update(
        created_at=long_ago,
        claimed_by="other-worker",
        claimed_until=timezone.now() + datetime.timedelta(minutes=1),
    )
    assert run_action_batch(runs) == {"executed": 0, "failed": 0}
    assert sweep_stale_runs(older_than_seconds=60) == 0
    assert not mail.outbox

    # The other worker died: its claim is not renewed and runs out.
    ActionRun.objects.filter(pk__in=runs).update(claimed_until=long_ago)
    assert sweep_stale_runs(older_than_seconds=60) == len(runs)
    assert run_action_batch(runs) == {"executed": 1, "failed": 0}  # the swept task
    assert len(mail.outbox) == 1
    subscription.refresh_from_db()
    assert subscription.actions_executed == 1


def test_email_renders_subject_and_body() -> None:
    subscription = subscription_with_actions(
        [
            {
                "type": "email",
                "to": ["ops@example.com"],
                "subject": "Alarm on {{ topic }}",
                "body": "value={{ payload.value }}",
            }
        ]
    )
    run_action_batch(deliver(subscription, "plant/boiler", b'{"value": 99}'))
    assert mail.outbox[0].subject == "Alarm on plant/boiler"
    assert mail.outbox[0].body == "value=99"


def test_alert_opens_once_and_resolves() -> None:
    subscription = subscription_with_actions(
        [
            {
                "type": "alert",
                "value": "{{ payload.t }}",
                "op": ">",
                "threshold": 80,
                "severity": "critical",
            }
        ]
    )
    for value in (85, 90):
        run_action_batch(
            deliver(subscription, "plant/boiler", json.dumps({"t": value}).encode())
        )
    open_alerts = Alert.objects.filter(state="open")
    assert open_alerts.count() == 1
    assert open_alerts.get().severity == "critical" and open_alerts.get().value == 85
    run_action_batch(deliver(subscription, "plant/boiler", b'{"t": 70}'))
    assert Alert.objects.filter(state="open").count() == 0
    assert Alert.objects.get().state == "resolved"
    run_action_batch(deliver(subscription, "plant/boiler", b'{"t": 95}'))
    assert Alert.objects.filter(state="open").count() == 1


def test_a_template_error_is_a_failure_not_a_crash() -> None:
    subscription = subscription_with_actions(
        [{"type": "alert", "value": "{{ payload.missing }}", "op": ">", "threshold": 1}]
    )
    assert run_action_batch(deliver(subscription, "plant/x", b"{}")) == {
        "executed": 0,
        "failed": 1,
    }
    subscription.refresh_from_db()
    assert "not a number" in subscription.last_error


def test_disabled_subscriptions_do_nothing() -> None:
    subscription = subscription_with_actions(
        [{"type": "email", "to": "ops@example.com", "subject": "x"}], enabled=False
    )
    assert deliver(subscription, "plant/x", b"1") == []
    subscription.refresh_from_db()
    assert subscription.messages_received == 0


@pytest.mark.mosquitto
def test_republish_reaches_a_real_subscriber(plain_broker) -> None:
    received: list[mqtt.MQTTMessage] = []
    arrived = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="listener")

    def on_message(
        client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        received.append(message)
        arrived.set()

    listener.on_message = on_message
    listener.connect("127.0.0.1", plain_broker.port)
    listener.subscribe("out/#", 1)
    listener.loop_start()
    try:
        subscription = subscription_with_actions(
            [
                {
                    "type": "republish",
                    "topic": "out/{{ topic_levels.1 }}",
                    "payload": '{"celsius": {{ payload.value }}}',
                    "qos": 1,
                },
                {"type": "republish", "topic": "plant/loop"},
            ],
            port=plain_broker.port,
        )
        result = run_action_batch(
            deliver(subscription, "plant/boiler", b'{"value": 3}')
        )
        assert arrived.wait(5)
    finally:
        listener.loop_stop()
        listener.disconnect()
    assert received[0].topic == "out/boiler"
    assert json.loads(received[0].payload) == {"celsius": 3}
    # The second action would have matched plant/# again: refused, not looped.
    assert result == {"executed": 1, "failed": 1}


def test_counters_are_exact_after_many_messages(http_sink) -> None:
    subscription = subscription_with_actions(
        [{"type": "webhook", "url": http_sink.url}]
    )
    store_batch(
        [
            ReceivedMessage(
                subscription.broker_id, f"plant/{i}", b"1", 0, False, timezone.now()
            )
            for i in range(1000)
        ]
    )
    runs = list(ActionRun.objects.values_list("id", flat=True))
    assert len(runs) == 1000
    for start in range(0, 1000, 200):
        run_action_batch(runs[start : start + 200])
    subscription.refresh_from_db()
    assert subscription.messages_received == 1000
    assert subscription.actions_executed == 1000 and subscription.actions_failed == 0
    assert http_sink.effects == 1000
