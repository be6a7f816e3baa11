"""Flattening payloads into numeric keys (the rules in devices.telemetry)."""

from __future__ import annotations

import json

import pytest

from devices.telemetry import MAX_KEYS, DeviceIndex, DeviceRef, flatten_payload


def flat(payload: object, topic: str = "plant/d1/telemetry") -> dict[str, float]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return flatten_payload(raw, topic)


def test_nested_objects_give_dotted_keys() -> None:
    assert flat({"temperature": 21.5, "env": {"hum": 40, "co2": {"ppm": 600}}}) == {
        "temperature": 21.5,
        "env.hum": 40.0,
        "env.co2.ppm": 600.0,
    }


def test_booleans_are_one_and_zero() -> None:
    assert flat({"door_open": True, "relay": False}) == {"door_open": 1.0, "relay": 0.0}


def test_strings_nulls_and_arrays_are_ignored() -> None:
    assert flat(
        {"name": "boiler", "t": "21.5", "gone": None, "v": [1, 2], "ok": 3}
    ) == {"ok": 3.0}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"21.5", {"temperature": 21.5}),
        (b" 7 \n", {"temperature": 7.0}),
        (b"-1e3", {"temperature": -1000.0}),
        (b"true", {"temperature": 1.0}),
    ],
)
def test_a_plain_number_is_named_after_the_last_topic_level(
    payload: bytes, expected: dict[str, float]
) -> None:
    assert flatten_payload(payload, "plant/d1/temperature") == expected


@pytest.mark.parametrize(
    "payload",
    [b"", b"online", b"NaN", b"Infinity", b"\xff\xfe", b"[1, 2]", b'"21.5"', b"null"],
)
def test_payloads_without_numbers_give_nothing(payload: bytes) -> None:
    assert flatten_payload(payload, "plant/d1/temperature") == {}


def test_non_finite_and_huge_values_are_dropped() -> None:
    assert flatten_payload(b'{"a": NaN, "b": 1e400, "c": 1}', "t") == {"c": 1.0}
    assert flat({"big": 10**400, "ok": 2}) == {"ok": 2.0}


def test_keys_per_message_are_bounded() -> None:
    assert len(flat({f"k{i}": i for i in range(MAX_KEYS + 50)})) == MAX_KEYS


def _device(pk: int, telemetry: str, **extra: str) -> DeviceRef:
    values = {
        "availability_topic": "",
        "command_topic": "",
        "payload_online": "online",
        "payload_offline": "offline",
        **extra,
    }
    return DeviceRef(pk, 1, 1, f"d{pk}", f"Device {pk}", telemetry, **values)


def test_the_index_matches_like_a_broker() -> None:
    index = DeviceIndex(
        [
            _device(1, "plant/d1/#", availability_topic="plant/d1/status"),
            _device(2, "plant/+/temp", command_topic="plant/x/temp"),
            _device(3, "plant/d3"),
            _device(4, "#"),
        ]
    )

    def pks(topic: str) -> list[int]:
        return sorted(d.pk for d in index.telemetry(1, topic))

    assert pks("plant/d1") == [1, 4]
    assert pks("plant/d1/env/hum") == [1, 4]
    # Availability and command topics are not telemetry of their device.
    assert pks("plant/d1/status") == [4]
    assert pks("plant/d9/temp") == [2, 4]
    assert pks("plant/x/temp") == [4]
    assert pks("plant/d3") == [3, 4]
    assert pks("plant/d3/x") == [4]
    assert pks("$SYS/broker/uptime") == []
    assert index.telemetry(2, "plant/d1") == []
    assert [d.pk for d in index.availability(1, "plant/d1/status")] == [1]
