"""`{% reading device key value %}`: a telemetry value with its key's decimals
(`Device.decimals_for`), written by `mqttadmin.lib.units.format_number`."""

from __future__ import annotations

from typing import Any

from django import template

from devices.models import Device
from mqttadmin.lib.units import decimals_of, format_number

register = template.Library()


@register.simple_tag
def reading(device: Device | None, key: str, value: Any) -> str:
    """`21.50`: the value with as many decimals as its key ever needed."""
    if value is None:
        return "—"
    places = (
        device.decimals_for(key, value)
        if isinstance(device, Device)
        else decimals_of(value)
    )
    return format_number(value, places)
