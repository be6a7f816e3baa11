"""MQTT topic rules of mqttadmin.lib.topics, with paho as the matching reference."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from mqttadmin.lib.topics import (
    MAX_TOPIC_BYTES,
    parse_topic_filter,
    topic_matches,
    validate_client_id,
    validate_mqtt_username,
    validate_topic_filter,
    validate_topic_name,
)

# Few distinct levels, so filters and topics often line up; "$" levels and empty
# levels are where matching rules get subtle.
plain_level = st.one_of(
    st.sampled_from(["a", "b", "sensor", "$SYS", "$x", "", "with space", "é"]),
    st.text(
        alphabet=st.characters(
            blacklist_characters="/+#\x00", blacklist_categories=("Cs", "Cc", "Cn")
        ),
        max_size=4,
    ),
)
topics = st.lists(plain_level, min_size=1, max_size=5).map("/".join).filter(bool)
filter_level = st.one_of(plain_level, st.just("+"))
filters = st.builds(
    lambda levels, hash_: "/".join(levels + (["#"] if hash_ else [])),
    st.lists(filter_level, min_size=0, max_size=5),
    st.booleans(),
).filter(bool)


@settings(max_examples=400)
@given(filters, topics)
def test_matching_agrees_with_paho(filter_: str, topic: str) -> None:
    assert topic_matches(filter_, topic) == topic_matches_sub(filter_, topic)


@given(filters, topics)
def test_matching_agrees_with_paho_on_related_pairs(filter_: str, topic: str) -> None:
    # Topics built from the filter itself, so that matches are common.
    derived = filter_.replace("+", "x").replace("#", "y/z")
    assert topic_matches(filter_, derived) == topic_matches_sub(filter_, derived)
    prefixed = f"{topic}/{derived}"
    assert topic_matches(filter_, prefixed) == topic_matches_sub(filter_, prefixed)


@given(topics)
def test_a_topic_is_a_valid_name_and_filter_that_matches_itself(topic: str) -> None:
    validate_topic_name(topic)
    validate_topic_filter(topic)
    assert topic_matches(topic, topic)


@given(filters)
def test_generated_filters_are_valid(filter_: str) -> None:
    assert parse_topic_filter(filter_).filter == filter_


@given(topics)
def test_hash_matches_everything_but_dollar_topics(topic: str) -> None:
    assert topic_matches("#", topic) == (not topic.startswith("$"))


@given(topics, st.integers(min_value=0, max_value=40))
def test_nul_anywhere_is_refused(topic: str, position: int) -> None:
    position = min(position, len(topic))
    poisoned = topic[:position] + "\x00" + topic[position:]
    for validate in (validate_topic_name, validate_topic_filter):
        with pytest.raises(ValidationError, match="NUL"):
            validate(poisoned)


@given(topics, st.sampled_from(["+", "#"]))
def test_names_with_wildcards_are_refused(topic: str, wildcard: str) -> None:
    with pytest.raises(ValidationError, match="wildcards"):
        validate_topic_name(f"{topic}/{wildcard}")


@given(st.lists(plain_level, min_size=1, max_size=4), st.text(min_size=1, max_size=3))
def test_wildcards_sharing_a_level_are_refused(levels: list, extra: str) -> None:
    extra = extra.replace("/", "x")
    for bad in (f"{extra}+", f"+{extra}", f"{extra}#", f"#{extra}"):
        if bad in ("+", "#", "++", "##"):
            continue
        with pytest.raises(ValidationError):
            validate_topic_filter("/".join([*levels, bad]))


@given(st.lists(filter_level, min_size=1, max_size=4))
def test_hash_not_last_is_refused(rest: list) -> None:
    with pytest.raises(ValidationError, match="last level"):
        validate_topic_filter("/".join(["a", "#", *rest]))


@pytest.mark.parametrize(
    "value", ["a/#/b", "a/b#", "sport+", "a/+b", "#/a", "++", "$share//x"]
)
def test_invalid_filters(value: str) -> None:
    with pytest.raises(ValidationError):
        validate_topic_filter(value)


@pytest.mark.parametrize("value", ["", "a+", "a/+", "#", "a\x00"])
def test_invalid_names(value: str) -> None:
    with pytest.raises(ValidationError):
        validate_topic_name(value)


def test_length_is_counted_in_utf8_bytes() -> None:
    validate_topic_name("x" * MAX_TOPIC_BYTES)
    validate_topic_filter("x" * (MAX_TOPIC_BYTES - 2) + "/#")
    with pytest.raises(ValidationError, match="65535"):
        validate_topic_name("x" * (MAX_TOPIC_BYTES + 1))
    # 32,768 two-byte characters are 65,536 bytes.
    with pytest.raises(ValidationError, match="65535"):
        validate_topic_name("é" * 32768)
    with pytest.raises(ValidationError, match="65535"):
        validate_topic_filter("é" * 32768)


@pytest.mark.parametrize(
    ("value", "group", "inner"),
    [
        ("$share/workers/plant/+/temp", "workers", "plant/+/temp"),
        ("$share/g/#", "g", "#"),
        ("plant/#", None, "plant/#"),
        ("$SYS/broker/#", None, "$SYS/broker/#"),
    ],
)
def test_shared_subscriptions_are_split(value: str, group: str, inner: str) -> None:
    parsed = parse_topic_filter(value)
    assert (parsed.share_group, parsed.filter, parsed.subscription) == (
        group,
        inner,
        value,
    )


@pytest.mark.parametrize(
    "value", ["$share//x", "$share/g+/x", "$share/g#/x", "$share/g", "$share/g/"]
)
def test_invalid_shared_subscriptions(value: str) -> None:
    with pytest.raises(ValidationError):
        validate_topic_filter(value)


@given(
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        min_size=1,
        max_size=23,
    )
)
def test_protocol_safe_client_ids_are_accepted(client_id: str) -> None:
    validate_client_id(client_id)
    validate_mqtt_username(client_id)


@pytest.mark.parametrize("value", ["a\x00b", "a\x07b", "a\x85b", "x" * 129])
def test_invalid_client_ids(value: str) -> None:
    with pytest.raises(ValidationError):
        validate_client_id(value)


@pytest.mark.parametrize("value", ["a\x00b", "a\x1bb", "x" * 257])
def test_invalid_usernames(value: str) -> None:
    with pytest.raises(ValidationError):
        validate_mqtt_username(value)


@pytest.mark.parametrize("value", ["/:guest", "plant/line-1#2", "a+b", "a b"])
def test_foreign_brokers_identities_are_accepted(value: str) -> None:
    # Mosquitto's ACL rules are the managed users' (acl.models), not MQTT's.
    validate_client_id(value)
    validate_mqtt_username(value)


def test_empty_client_id_and_username_are_allowed() -> None:
    validate_client_id("")
    validate_mqtt_username("")
