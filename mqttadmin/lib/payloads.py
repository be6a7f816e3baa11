"""Reading untrusted JSON (MQTT payloads, request bodies) within fixed bounds.

A payload is whatever anyone allowed on a topic published: 50,000 nested brackets,
`NaN`, `1e999`, megabytes. Python's parser recurses per nesting level (a
RecursionError, not a ValueError, past about a thousand; and a value nested a few
hundred levels deep breaks whatever walks it later: templates, encoders, repr),
accepts `NaN`/`Infinity` (which are not JSON: the browser's JSON.parse and every
strict encoder refuse them) and reads `1e999` as infinity. So every payload parse
goes through `parse_json`, which gives up (None) before parsing anything deeper
than `MAX_DEPTH`, longer than `MAX_BYTES`, or holding a non-finite number; callers
then treat the payload as text. Nothing here raises on any input.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

# Deeper than any real telemetry document; shallow enough that walking a parsed
# value recursively (encoders, templates, repr) stays far from the recursion limit.
MAX_DEPTH = 64
# Parsing costs memory of several times the text; larger payloads stay text.
MAX_BYTES = 1024 * 1024

# A JSON string (with its escapes): brackets inside strings do not nest.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


@dataclass(frozen=True, slots=True)
class Parsed:
    """A successfully parsed JSON value (`value` may itself be None: `null`)."""

    value: Any


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NotFinite(text)
    return number


def nesting_depth(text: str) -> int:
    """How deep brackets nest outside strings (a cheap upper bound for JSON)."""
    if text.count("[") + text.count("{") == 0:
        return 0
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text))
    return max(accumulate(_DEPTH_STEP[c] for c in brackets), default=0)


def parse_json(
    text: str | bytes,
    *,
    max_depth: int = MAX_DEPTH,
    max_bytes: int = MAX_BYTES,
    allow_non_finite: bool = False,
) -> Parsed | None:
    """The JSON value of `text`, or None when it is not strict, finite JSON within
    `max_depth` levels and `max_bytes` bytes (the caller falls back to text).

    `NaN`, `Infinity` and numbers that overflow a float (`1e999`) are refused, so
    whatever is parsed can be written back as valid JSON. A reader that drops
    non-finite numbers itself (telemetry) may take them with `allow_non_finite`.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        if len(text) > max_bytes:
            return None
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            return None
    elif (
        len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        return None
    # Brackets are counted before parsing: the parser itself recurses per level.
    open_brackets = text.count("[") + text.count("{")
    if open_brackets > max_depth and nesting_depth(text) > max_depth:
        return None
    try:
        if allow_non_finite:
            value = json.loads(text)
        else:
            value = json.loads(
                text, parse_constant=_refuse_constant, parse_float=_finite_float
            )
    except (ValueError, RecursionError, MemoryError):
        # ValueError covers malformed JSON, refused constants and integers with
        # more digits than Python converts (sys.set_int_max_str_digits).
        return None
    return Parsed(value)


def json_problem(
    text: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES
) -> str:
    """Why `parse_json` refused `text`, for an error message to a user (English,
    like the parser's own messages; callers put it into a translated sentence)."""
    size = (
        len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "replace"))
    )
    if size > max_bytes:
        return f"larger than {max_bytes} bytes"
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not UTF-8 (byte {exc.start})"
    if nesting_depth(text) > max_depth:
        return f"nested deeper than {max_depth} levels"
    try:
        json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite as exc:
        return f"{exc} is not a finite number"
    except (ValueError, RecursionError, MemoryError) as exc:
        return str(exc) or exc.__class__.__name__
    return ""


def loads_or_none(text: str | bytes, default: Any = None) -> Any:
    """The parsed value, or `default` when `parse_json` refuses the text."""
    parsed = parse_json(text)
    return default if parsed is None else parsed.value
