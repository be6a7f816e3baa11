"""Action templates, as the operator who writes them can abuse them: rendering never
HTML-escapes (webhook bodies, republished payloads and e-mails are not HTML), the
language is a vetted list without loaders (include/extends/load/debug are refused
at save, naming the field), and every render is bounded in steps, size and time,
in a dry run as in a real run, where a runaway template fails its run alone."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.core import mail

from actions.models import ActionRun
from actions.runner import run_action_batch
from actions.templating import FILTERS, MAX_TEMPLATE_CHARS, TAGS, json_filter
from brokers.action_kinds import MessageContext, dry_run
from brokers.models import Broker, BrokerStatus, Subscription
from mqttadmin.models import AuditEntry
from tests.actions.test_actions import deliver, sample
from tests.brokers.test_pages import error_next_to
from tests.brokers.test_pages_subscriptions import (
    action_data,
    management,
    subscription_data,
)
from tests.clients import HTMX, as_user, logged_in

pytestmark = pytest.mark.django_db

NASTY = '{"name": "<b>Tom & \\"Jerry\\"</b>", "note": "it\'s 5 > 3\\nok", "v": 1}'

# Each of these ends, in a few milliseconds, in an error naming the action field.
RUNAWAY = {
    "wide padding": '{{ payload_text|ljust:"20000000" }}',
    "wide stringformat": '{{ payload.v|stringformat:"020000000d" }}',
    "many decimals": '{{ payload.v|floatformat:"100000000" }}',
    "nested loops": (
        "{% for a in payload_text %}{% for b in payload_text %}"
        "{% for c in payload_text %}{% endfor %}{% endfor %}{% endfor %}"
    ),
    "output per iteration": (
        "{% for a in payload_text %}{% for b in payload_text %}"
        "{{ payload_text }}{% endfor %}{% endfor %}"
    ),
    "join amplification": "{{ payload_text|make_list|join:payload_text }}",
    "doubling chain": "".join(
        f"{{% with v{i}=v{i - 1}|add:v{i - 1} %}}" for i in range(1, 40)
    ).replace("v0", "payload_text")
    + "{{ v39|length }}"
    + "{% endwith %}" * 39,
    "inside an if": '{% if payload_text|ljust:"5000000" == "x" %}y{% endif %}',
}
# A payload a few KB long: the runaway templates would take minutes and gigabytes.
BIG_PAYLOAD = json.dumps({"v": 7, "pad": "x" * 3000}).encode()


@pytest.fixture
def broker(world: dict) -> Broker:
    broker = Broker.objects.create(
        product=world["product"], name="b", host="127.0.0.1", port=1
    )
    BrokerStatus.objects.create(broker=broker)
    return broker


def subscription(broker: Broker, actions: list[dict[str, Any]]) -> Subscription:
    """Stored past validation: as a row saved before today's rules would be."""
    return Subscription.objects.create(
        broker=broker, name="s", topic_filter="plant/#", actions=actions
    )


# --- Nothing is escaped ----------------------------------------------------------


def test_a_webhook_body_arrives_as_written(broker: Broker, http_sink: Any) -> None:
    sub = subscription(
        broker,
        [
            {"type": "webhook", "url": f"{http_sink.url}/raw"},
            {
                "type": "webhook",
                "url": f"{http_sink.url}/json",
                "body": '{"who": {{ payload.name|json }}, "all": {{ payload|json }}, '
                '"topic": {{ topic|json }}}',
            },
        ],
    )
    runs = deliver(sub, "plant/a&b", NASTY.encode())
    assert run_action_batch(runs) == {"executed": 2, "failed": 0}
    raw, as_json = http_sink.requests
    assert raw.body == NASTY.encode()
    body = json.loads(as_json.body)
    assert body == {
        "who": '<b>Tom & "Jerry"</b>',
        "all": json.loads(NASTY),
        "topic": "plant/a&b",
    }


def test_an_email_is_plain_text(broker: Broker) -> None:
    sub = subscription(
        broker,
        [
            {
                "type": "email",
                "to": "ops@example.com",
                "subject": "{{ payload.name }} & co",
                "body": "{{ payload.note }} / {{ payload_text }}",
            }
        ],
    )
    assert run_action_batch(deliver(sub, "plant/x", NASTY.encode()))["executed"] == 1
    message = mail.outbox[0]
    assert message.subject == '<b>Tom & "Jerry"</b> & co'
    assert message.body == "it's 5 > 3\nok / " + NASTY


@pytest.mark.mosquitto
def test_a_republished_payload_is_not_escaped(world: dict, mosquitto: Any) -> None:
    process = mosquitto()
    broker = Broker.objects.create(
        product=world["product"], name="b", host="127.0.0.1", port=process.port
    )
    BrokerStatus.objects.create(broker=broker)
    received: list[mqtt.MQTTMessage] = []
    arrived = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="listener")

    def on_message(
        client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        received.append(message)
        arrived.set()

    listener.on_message = on_message
    listener.connect("127.0.0.1", process.port)
    listener.subscribe("out/#", 1)
    listener.loop_start()
    try:
        sub = subscription(
            broker,
            [
                {
                    "type": "republish",
                    "topic": "out/{{ topic_levels.1 }}",
                    "payload": '{"copy": {{ payload|json }}, '
                    '"n": "{{ payload.name }}"}',
                    "qos": 1,
                }
            ],
        )
        result = run_action_batch(deliver(sub, "plant/boiler", NASTY.encode()))
        assert arrived.wait(5)
    finally:
        listener.loop_stop()
        listener.disconnect()
    assert result == {"executed": 1, "failed": 0}
    text = received[0].payload.decode()
    assert "&quot;" not in text and "&lt;" not in text and "&amp;" not in text
    assert json.loads(text.split(', "n": ')[0] + "}")["copy"] == json.loads(NASTY)
    assert text.endswith('"n": "<b>Tom & "Jerry"</b>"}')


def test_the_json_filter_keeps_json_valid_whatever_the_payload() -> None:
    actions = [
        {
            "type": "webhook",
            "url": "http://sink/x",
            "body": '{"v": {{ payload.v|json }}, "all": {{ payload|json }}, '
            '"text": {{ payload_text|json }}, "at": {{ received_at|json }}}',
        }
    ]
    payload = b'{"v": "a\\u2028b\\n", "w": [1.5, null, {"q": "\\"</script>"}]}'
    body = json.loads(dry_run(actions, sample(payload=payload))[0]["body"])
    assert body["v"] == "a\u2028b\n" and body["all"]["w"][:2] == [1.5, None]
    assert body["all"]["w"][2] == {"q": '"</script>'}
    assert body["text"] == payload.decode()
    assert isinstance(body["at"], str)
    # NaN and infinities have no JSON form: null, as JSON.stringify writes them.
    assert json_filter({"n": float("nan"), "i": [float("inf")]}) == (
        '{"n": null, "i": [null]}'
    )


# --- Only vetted tags and filters; refused at save, naming the field ---------------

REFUSED_AT_SAVE = {
    "relative include": '{% include "./x" %}',
    "include": '{% include "brokers/detail.html" %}',
    "extends": '{% extends "base.html" %}',
    "load": "{% load static %}{% static 'x' %}",
    "debug": "{% debug %}",
    "lorem": "{% lorem 100000000 w %}",
    "url": "{% url 'brokers:list' %}",
    "csrf_token": "{% csrf_token %}",
    "pprint": "{{ payload|pprint }}",
    "escape": "{{ payload|escape }}",
    "too long": "x" * (MAX_TEMPLATE_CHARS + 1),
}


@pytest.mark.parametrize("case", sorted(REFUSED_AT_SAVE))
def test_the_api_refuses_an_unvetted_template_naming_the_field(
    world: dict, broker: Broker, case: str
) -> None:
    operator = as_user(world["users"]["operator"])
    template = REFUSED_AT_SAVE[case]
    created = operator.post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "s",
            "topic_filter": "plant/#",
            "actions": [
                {"type": "telemetry"},
                {"type": "webhook", "url": "https://h.example/x", "body": template},
            ],
        },
        format="json",
    )
    assert created.status_code == 400, created.content
    assert any(m.startswith("actions[1].body: ") for m in created.json()["actions"])
    assert not Subscription.objects.exists()
    # An existing subscription is left as it was.
    existing = subscription(broker, [{"type": "telemetry"}])
    changed = operator.patch(
        f"/api/v1/subscriptions/{existing.pk}/",
        {"actions": [{"type": "republish", "topic": "out", "payload": template}]},
        format="json",
    )
    assert changed.status_code == 400
    assert any(m.startswith("actions[0].payload: ") for m in changed.json()["actions"])
    existing.refresh_from_db()
    assert existing.actions == [{"type": "telemetry"}]
    assert not AuditEntry.objects.filter(action="subscription.update").exists()


def test_the_error_says_which_tags_exist(world: dict, broker: Broker) -> None:
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "s",
            "topic_filter": "plant/#",
            "actions": [
                {"type": "email", "to": "a@b.example", "subject": "{% debug %}"}
            ],
        },
        format="json",
    )
    message = " ".join(response.json()["actions"])
    assert "actions[0].subject" in message and "“debug” is not available" in message
    assert "for, if, ifchanged" in message


def test_the_page_refuses_an_include_next_to_its_field(
    world: dict, broker: Broker
) -> None:
    client = logged_in(world["users"]["operator"])
    data = {
        **subscription_data(**management(1)),
        **action_data(
            0, "webhook", url="https://h.example/x", body='{% include "./x" %}'
        ),
    }
    response = client.post(f"/brokers/{broker.pk}/subscriptions/new/", data, **HTMX)
    assert response.status_code == 200
    assert "include" in error_next_to(response.content.decode(), "actions-0-body")
    assert not Subscription.objects.exists()


def test_the_admin_refuses_an_include(world: dict, broker: Broker) -> None:
    root = logged_in(world["users"]["superuser"])
    existing = subscription(broker, [{"type": "telemetry"}])
    url = f"/admin/brokers/subscription/{existing.pk}/change/"
    from tests.brokers.test_admin import _posted

    data = _posted(root.get(url).context["adminform"].form)
    data["actions"] = json.dumps(
        [{"type": "alert", "value": '{% include "./x" %}', "op": ">", "threshold": 1}]
    )
    response = root.post(url, data)
    assert response.status_code == 200
    assert "actions[0].value" in response.content.decode()
    existing.refresh_from_db()
    assert existing.actions == [{"type": "telemetry"}]


def test_the_documented_lists_are_the_engines() -> None:
    from actions.templating import engine

    library = engine().template_builtins
    assert sorted(name for lib in library for name in lib.tags) == sorted(TAGS)
    assert sorted(name for lib in library for name in lib.filters) == sorted(FILTERS)
    assert engine().template_loaders == []
    assert engine().autoescape is False


# --- Bounded: dry run and real run ------------------------------------------------


@pytest.mark.parametrize("case", sorted(RUNAWAY))
def test_the_dry_run_stops_a_runaway_template_naming_the_field(
    world: dict, broker: Broker, case: str
) -> None:
    sub = subscription(
        broker,
        [
            {"type": "alert", "value": "{{ payload.v }}", "op": ">", "threshold": 1},
            {"type": "webhook", "url": "https://h.example/x", "body": RUNAWAY[case]},
        ],
    )
    started = time.monotonic()
    response = as_user(world["users"]["operator"]).post(
        f"/api/v1/subscriptions/{sub.pk}/test/",
        {"topic": "plant/boiler", "payload": BIG_PAYLOAD.decode()},
        format="json",
    )
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    alert, webhook = response.json()["actions"]
    assert alert["ok"] is True and alert["value"] == 7
    assert webhook["ok"] is False
    assert webhook["error"].startswith("Action 2 (webhook): body: template error: ")


def test_the_page_dry_run_shows_the_error(world: dict, broker: Broker) -> None:
    sub = subscription(
        broker,
        [
            {
                "type": "webhook",
                "url": "https://h.example/x",
                "body": RUNAWAY["nested loops"],
            }
        ],
    )
    response = logged_in(world["users"]["operator"]).post(
        f"/brokers/{broker.pk}/subscriptions/{sub.pk}/dry-run/",
        {"topic": "plant/boiler", "payload": BIG_PAYLOAD.decode()},
        **HTMX,
    )
    assert response.status_code == 200
    assert "Action 1 (webhook): body: template error:" in response.content.decode()


def test_a_runaway_template_fails_its_own_run_only(
    broker: Broker, http_sink: Any
) -> None:
    """Two subscriptions, one message each, one batch: the runaway action fails
    with its error, the other actions of the same run and the other run go on."""
    bad = subscription(
        broker,
        [
            {
                "type": "webhook",
                "url": f"{http_sink.url}/bad",
                "body": RUNAWAY["output per iteration"],
            },
            {"type": "webhook", "url": f"{http_sink.url}/after"},
        ],
    )
    good = Subscription.objects.create(
        broker=broker,
        name="good",
        topic_filter="other/#",
        actions=[{"type": "webhook", "url": f"{http_sink.url}/good"}],
    )
    runs = deliver(bad, "plant/x", BIG_PAYLOAD) + deliver(good, "other/x", b"1")
    started = time.monotonic()
    assert run_action_batch(runs) == {"executed": 2, "failed": 1}
    assert time.monotonic() - started < 10
    assert sorted(r.path for r in http_sink.requests) == ["/after", "/good"]
    bad.refresh_from_db()
    assert bad.last_error.startswith("Action 1 (webhook): body: template error: ")
    states = dict(
        ActionRun.objects.filter(pk__in=runs).values_list("subscription_id", "state")
    )
    assert states == {bad.pk: "failed", good.pk: "done"}


def test_a_template_saved_before_the_rules_fails_at_run_time(
    broker: Broker, http_sink: Any
) -> None:
    sub = subscription(
        broker,
        [
            {
                "type": "webhook",
                "url": f"{http_sink.url}/x",
                "body": '{% include "./x" %}',
            },
            {"type": "email", "to": "a@b.example", "subject": "{% debug %}"},
        ],
    )
    assert run_action_batch(deliver(sub, "plant/x", b"1")) == {
        "executed": 0,
        "failed": 2,
    }
    assert http_sink.requests == [] and mail.outbox == []
    run = ActionRun.objects.get(subscription=sub)
    assert "Action 1 (webhook): body: template error:" in run.error
    assert "Action 2 (email): subject: template error:" in run.error


def test_ordinary_templates_still_work() -> None:
    actions = [
        {
            "type": "webhook",
            "url": "http://sink/x",
            "body": "{% for level in topic_levels %}{{ forloop.counter }}="
            "{{ level|upper }}{% if not forloop.last %},{% endif %}{% endfor %}"
            " {{ payload.value|floatformat:1 }}"
            ' {{ payload.value|stringformat:"08.3f" }}'
            ' {{ topic|ljust:"20" }}| {{ received_at|date:"Y" }}'
            " {% with v=payload.value %}{{ v|add:1 }}{% endwith %}",
        }
    ]
    message = MessageContext(
        "plant/boiler/temp",
        b'{"value": 21.5}',
        0,
        False,
        sample().received_at,
        {"id": 1},
        {"id": 2},
    )
    body = dry_run(actions, message)[0]["body"]
    year = message.received_at.year
    assert body == (
        f"1=PLANT,2=BOILER,3=TEMP 21.5 0021.500 plant/boiler/temp   | {year} 22"
    )
