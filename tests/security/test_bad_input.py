"""Property-based tests of the input rules: topics, filters, ids, usernames, payloads.

Matching is checked against paho-mqtt's `topic_matches_sub`, an independent
implementation of the same protocol rules.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from acl.models import (
    validate_managed_client_id,
    validate_managed_username,
    validate_rule_filter,
)
from brokers.choices import PayloadEncoding
from brokers.services import encode_payload
from history.sinks import split_payload
from mqttadmin.lib.payloads import exact_payload
from mqttadmin.lib.topics import (
    MAX_TOPIC_BYTES,
    parse_topic_filter,
    topic_matches,
    validate_client_id,
    validate_mqtt_username,
    validate_topic_filter,
    validate_topic_name,
)

# Small alphabets make collisions (and so matches) likely; "$" exercises $SYS rules.
LEVEL = st.text(alphabet="ab$é ", max_size=3)
TOPIC = st.lists(LEVEL, min_size=1, max_size=5).map("/".join).filter(bool)
FILTER_LEVEL = st.one_of(LEVEL, st.just("+"))


@st.composite
def topic_filters(draw: Any) -> str:
    levels = draw(st.lists(FILTER_LEVEL, min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    value = "/".join(levels)
    assume(value)
    return value


ANY_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
)
SPECIALS = st.text(alphabet="ab/+#$\x00 :\t\n\x7fé", max_size=12)


def outcome(check: Any, value: Any) -> str | None:
    """None when accepted, the error code when refused; anything else fails."""
    try:
        check(value)
    except ValidationError as exc:
        return exc.code or "invalid"
    return None


@given(topic_filters(), TOPIC)
@example("#", "$SYS/broker/load")
@example("+/a", "$x/a")
@example("a/#", "a")
@example("+", "")
def test_matching_agrees_with_paho(filter_: str, topic: str) -> None:
    assert topic_matches(filter_, topic) == topic_matches_sub(filter_, topic)


@given(topic_filters())
def test_valid_filters_are_accepted_and_round_trip(filter_: str) -> None:
    assert outcome(validate_topic_filter, filter_) is None
    parsed = parse_topic_filter(filter_)
    assert parsed.subscription == filter_ and parsed.share_group is None


@given(st.text(alphabet="abc", min_size=1, max_size=5), topic_filters())
def test_shared_subscriptions_split_the_group(group: str, filter_: str) -> None:
    parsed = parse_topic_filter(f"$share/{group}/{filter_}")
    assert (parsed.share_group, parsed.filter) == (group, filter_)
    assert parsed.subscription == f"$share/{group}/{filter_}"


@given(st.one_of(SPECIALS, ANY_TEXT))
def test_filters_are_refused_by_the_rule_they_break(value: str) -> None:
    code = outcome(validate_topic_filter, value)
    inner = value
    if value.startswith("$share/"):
        inner = value[len("$share/") :].partition("/")[2]
    levels = inner.split("/")
    breaks_wildcards = any(
        ("#" in level and (level != "#" or i != len(levels) - 1))
        or ("+" in level and level != "+")
        for i, level in enumerate(levels)
    )
    refused_characters = ("control", "noncharacter", "utf8")
    if value == "" or "\x00" in value:
        assert code in ("empty", "nul")
    elif code in refused_characters:
        assert any(
            ord(ch) < 0x20
            or 0x7F <= ord(ch) <= 0x9F
            or 0xFDD0 <= ord(ch) <= 0xFDEF
            or (ord(ch) & 0xFFFF) >= 0xFFFE
            or 0xD800 <= ord(ch) <= 0xDFFF
            for ch in value
        )
    elif breaks_wildcards and not value.startswith("$share/"):
        assert code in ("hash_position", "plus_position")
    elif code is None:
        assert not breaks_wildcards


@given(st.one_of(SPECIALS, ANY_TEXT))
def test_topic_names_never_carry_wildcards_or_nul(value: str) -> None:
    if outcome(validate_topic_name, value) is None:
        assert value and "+" not in value and "#" not in value and "\x00" not in value
        # A name is a filter matching exactly itself.
        assert topic_matches(value, value) and topic_matches_sub(value, value)


def test_topic_length_is_counted_in_utf8_bytes() -> None:
    assert outcome(validate_topic_name, "é" * (MAX_TOPIC_BYTES // 2)) is None
    assert outcome(validate_topic_name, "é" * (MAX_TOPIC_BYTES // 2 + 1)) == "too_long"


@given(st.one_of(SPECIALS, ANY_TEXT))
def test_acl_rule_filters_are_filters_without_share(value: str) -> None:
    if outcome(validate_rule_filter, value) is None:
        assert outcome(validate_topic_filter, value) is None
        assert not value.startswith("$share/")


@given(st.one_of(SPECIALS, ANY_TEXT))
@example("a" * 129)
def test_client_ids_accepted_are_safe_for_mosquitto_acls(value: str) -> None:
    if outcome(validate_client_id, value) is None:
        assert "\x00" not in value
        assert len(value.encode()) <= 128
    if outcome(validate_managed_client_id, value) is None:
        assert not any(ch in value for ch in "+#/\x00")
        assert len(value.encode()) <= 128


@given(st.one_of(SPECIALS, ANY_TEXT))
def test_usernames_accepted_fit_acls_and_password_files(value: str) -> None:
    if outcome(validate_mqtt_username, value) is None:
        assert "\x00" not in value
        assert len(value.encode()) <= 256
    if outcome(validate_managed_username, value) is None:
        assert not any(ch in value for ch in "+#/")
        assert value and ":" not in value
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in value)
        # A password file line `user:hash` splits back into this user.
        assert f"{value}:$7$hash".split(":", 1)[0] == value


@given(st.binary(max_size=200))
@example(b"\x00")
@example(b"\xff\xfe")
@example("é".encode())
def test_payloads_are_stored_exactly_once_and_losslessly(payload: bytes) -> None:
    text, data = split_payload(payload)
    assert (text is None) != (data is None)
    assert (text.encode("utf-8") if text is not None else data) == payload


@given(st.binary(max_size=200))
@example(b'{"a": 1')
@example(b"NaN")
@example(b"1e999")
def test_payload_views_never_fail_and_round_trip(payload: bytes) -> None:
    view = exact_payload(payload)
    if view.encoding == "base64":
        assert base64.b64decode(view.text) == payload
    else:
        assert view.encoding == "text"
        assert view.text.encode() == payload
    if view.is_json:
        # Strict JSON only: NaN, Infinity and 1e999 stay text.
        json.loads(view.text, parse_constant=_no_constants, parse_float=_finite)


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} labelled as JSON")


def _finite(text: str) -> float:
    value = float(text)
    assert value not in (float("inf"), float("-inf")), f"{text} labelled as JSON"
    return value


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(JSON.filter(lambda v: not isinstance(v, str)))
def test_json_payloads_publish_as_the_same_value(value: Any) -> None:
    # (A top-level string is read as JSON text, by design: see the next test.)
    assert json.loads(encode_payload(value, PayloadEncoding.JSON)) == value


@given(st.text(max_size=30))
def test_bad_base64_and_json_are_refused_naming_the_payload(value: str) -> None:
    for encoding in (PayloadEncoding.BASE64, PayloadEncoding.JSON):
        try:
            encode_payload(value, encoding)
        except ValidationError as exc:
            assert "payload" in exc.message_dict


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(filter_=st.one_of(SPECIALS, topic_filters()))
def test_the_api_refuses_bad_filters_with_a_400_naming_the_field(
    seeded: dict, filter_: str
) -> None:
    from brokers.models import Subscription
    from tests.clients import as_user

    client = as_user(seeded["users"]["operator"])
    before = Subscription.objects.count()
    response = client.post(
        "/api/v1/subscriptions/",
        {"broker": seeded["mine"]["broker"].pk, "name": "s", "topic_filter": filter_},
        format="json",
    )
    if outcome(validate_topic_filter, filter_) is None:
        assert response.status_code in (201, 400), response.content
    else:
        assert response.status_code == 400, response.content
        assert "topic_filter" in response.json()
        assert Subscription.objects.count() == before


@pytest.mark.parametrize(
    ("character", "refused"),
    [
        ("\x01", True),
        ("\x1f", True),
        ("\x7f", True),
        ("\x85", True),
        ("\ufdd0", True),
        ("\uffff", True),
        ("\U0001fffe", True),
        ("\u00a0", False),
        ("é", False),
        ("\U0001f600", False),
    ],
)
def test_the_character_rule_is_mosquittos(
    mosquitto: Any, character: str, refused: bool
) -> None:
    """What the validators refuse is what a real Mosquitto drops a client for."""
    import paho.mqtt.client as mqtt

    topic = f"qx/{character}/t"
    assert (outcome(validate_topic_name, topic) is not None) == refused
    broker = mosquitto()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="charcheck")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, b"x", qos=1)
        info.wait_for_publish(timeout=3)
        accepted = info.is_published()
    except (RuntimeError, ValueError):
        accepted = False
    finally:
        client.loop_stop()
        client.disconnect()
    assert accepted != refused


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("since", "status"),
    [
        ("0256-04-11T09:55:59+17:26", 200),  # PostgreSQL refuses that offset as is
        ("0001-01-01T00:10:00+23:00", 400),  # before year 1 in UTC
        ("yesterday", 400),
    ],
)
def test_history_times_are_normalised_or_refused_naming_the_parameter(
    seeded: dict, since: str, status: int
) -> None:
    from tests.clients import as_user

    broker = seeded["mine"]["broker"]
    response = as_user(seeded["users"]["viewer"]).get(
        f"/api/v1/brokers/{broker.pk}/messages/", {"since": since}
    )
    assert response.status_code == status, response.content
    if status == 400:
        assert "since" in response.json()
