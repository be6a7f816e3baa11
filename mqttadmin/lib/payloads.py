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

import base64
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


# --- Payloads shown exactly as received ------------------------------------------

# What a JSON document can start with (after whitespace): anything else is text
# without asking the parser.
_JSON_STARTS = frozenset('{["-0123456789tfn')


@dataclass(frozen=True, slots=True)
class ExactPayload:
    """A payload as it is shown everywhere: its text exactly as received (UTF-8
    without NUL), otherwise its bytes in base64. `is_json` says whether the whole
    text is strict JSON (no NaN, Infinity or overflowing numbers) within
    `parse_json`'s bounds: a label, never a reason to rewrite the bytes."""

    encoding: str  # "text" or "base64"
    text: str
    is_json: bool


def payload_text(payload: bytes | None) -> str | None:
    """The text of a payload when it is UTF-8 without NUL, else None (binary)."""
    if payload is None or b"\x00" in payload:
        return None
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def prefix_text(prefix: bytes) -> str | None:
    """The text of a payload's first bytes, cut anywhere: a UTF-8 character the
    cut split at the end is left out; anything else not UTF-8 is binary (None)."""
    if b"\x00" in prefix:
        return None
    try:
        return prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A split character is at most 3 bytes of an incomplete 4-byte sequence.
        if exc.reason != "unexpected end of data" or exc.start < len(prefix) - 3:
            return None
        return payload_text(prefix[: exc.start])


def exact_payload(
    payload: bytes | None, text: str | None = None, *, complete: bool = True
) -> ExactPayload:
    """A payload (its bytes, or its text when already decoded) for display and the
    API, byte-exact. Only a `complete` payload can be JSON: a prefix of a document
    is not one."""
    if text is None:
        text = payload_text(payload)
    if text is None:
        return ExactPayload(
            "base64", base64.b64encode(payload or b"").decode("ascii"), False
        )
    return ExactPayload("text", text, complete and parsed_json(text) is not None)


def parsed_json(text: str) -> Parsed | None:
    """`parse_json` of a payload's text, skipping the parser for plain text."""
    start = text.lstrip(" \t\r\n")[:1]
    if start not in _JSON_STARTS:
        return None
    return parse_json(text)


# --- MQTT 5 properties as shown ----------------------------------------------------

HEX_MARK = "hex:"
CORRELATION_DATA = "CorrelationData"
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def correlation_data_shown(value: Any) -> str:
    """Correlation data as text when its bytes are printable UTF-8 text, otherwise
    as `hex:<hex digits>`. A text that itself starts with `hex:` is shown as hex
    too, so the mark is never ambiguous.

    Stored rows hold it as paho's `Properties.json()` writes it (its bytes as a
    hex string) or as `{"hex": ...}`; `{"text": ...}` and a string that is not
    hex are taken as text.
    """
    raw: bytes | None = None
    if isinstance(value, dict):
        if isinstance(value.get("text"), str):
            raw = value["text"].encode("utf-8")
        elif isinstance(value.get("hex"), str) and _HEX.fullmatch(value["hex"]):
            raw = bytes.fromhex(value["hex"])
    elif isinstance(value, str):
        # paho writes the bytes as hex; any other string is taken as the text.
        raw = bytes.fromhex(value) if _HEX.fullmatch(value) else value.encode()
    elif isinstance(value, bytes | bytearray):
        raw = bytes(value)
    if raw is None:
        # Not a form any ingest wrote: shown as it is, marked as not decoded.
        return json.dumps(value, ensure_ascii=False, default=str)
    text = payload_text(raw)
    if text is not None and text.isprintable() and not text.startswith(HEX_MARK):
        return text
    return HEX_MARK + raw.hex()


def properties_shown(properties: dict[str, Any] | None) -> dict[str, Any]:
    """A message's MQTT 5 properties as the API, the exports and the pages give
    them: as stored, with the correlation data as text or `hex:...`."""
    if not properties:
        return {}
    shown = dict(properties)
    if CORRELATION_DATA in shown:
        shown[CORRELATION_DATA] = correlation_data_shown(shown[CORRELATION_DATA])
    return shown


# Short names for the compact properties cell, in the order shown.
_PROPERTY_LABELS = (
    ("ContentType", "content-type"),
    ("PayloadFormatIndicator", "format"),
    ("ResponseTopic", "response-topic"),
    (CORRELATION_DATA, "correlation"),
    ("MessageExpiryInterval", "expiry"),
    ("SubscriptionIdentifier", "subscription-id"),
)
_LABELLED = {name for name, _label in _PROPERTY_LABELS} | {"UserProperty"}


def properties_summary(properties: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The properties as (label, value) pairs for a compact cell: the well-known
    ones first under short names, user properties as `key=value`, any other
    property under its own name."""
    shown = properties_shown(properties)
    pairs: list[tuple[str, str]] = []
    for name, label in _PROPERTY_LABELS:
        if name not in shown:
            continue
        value = shown[name]
        if name == "PayloadFormatIndicator":
            value = "UTF-8" if value == 1 else "bytes"
        elif name == "MessageExpiryInterval":
            value = f"{value} s"
        elif isinstance(value, list):
            value = ", ".join(str(item) for item in value)
        pairs.append((label, str(value)))
    for pair in shown.get("UserProperty") or []:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            pairs.append(("user", f"{pair[0]}={pair[1]}"))
    for name, value in shown.items():
        if name not in _LABELLED:
            pairs.append((name, json.dumps(value, ensure_ascii=False, default=str)))
    return pairs
