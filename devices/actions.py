"""The `telemetry` subscription action: hands each message to device telemetry.

Registered into brokers' action registry (brokers.action_kinds) from
DevicesConfig.ready(), so the actions app names no devices code. Ingest's
TelemetrySink may have stored the message's points already: the hand-over skips
points stored before (devices.telemetry.telemetry_from_message).
"""

from __future__ import annotations

from typing import Any

from brokers.action_kinds import ActionCall, ActionKind, register_action_kind
from devices.telemetry import telemetry_from_message


def _validate(prefix: str, action: dict[str, Any], errors: dict[str, str]) -> None:
    """Nothing to check: the action has no fields."""


def _plan(action: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {"would": "hand the message to device telemetry"}


def _execute(call: ActionCall) -> None:
    telemetry_from_message(
        broker_id=call.broker_id,
        topic=call.topic,
        payload=call.payload,
        received_at=call.received_at,
    )


TELEMETRY = ActionKind("telemetry", validate=_validate, plan=_plan, execute=_execute)


def register_telemetry_action() -> None:
    register_action_kind(TELEMETRY)
