"""The one-line preview of a compact message row (PayloadPreview.line and
hex_head): whitespace collapsed, cut with an ellipsis, binary as leading bytes."""

from __future__ import annotations

import base64

from brokers.selectors import HEX_HEAD_BYTES, LINE_CHARS, PayloadPreview


def _text(text: str, truncated: bool = False) -> PayloadPreview:
    return PayloadPreview("text", text, len(text.encode()), truncated)


def _binary(data: bytes) -> PayloadPreview:
    return PayloadPreview("base64", base64.b64encode(data).decode(), len(data), False)


def test_pretty_json_reads_on_one_line() -> None:
    pretty = '{\n  "a": 1,\n\t"b": [\r\n    2\n  ]\n}'
    assert _text(pretty).line == '{ "a": 1, "b": [ 2 ] }'


def test_a_long_or_cut_payload_ends_with_an_ellipsis() -> None:
    long = "x" * (LINE_CHARS * 3)
    assert _text(long).line == "x" * LINE_CHARS + "…"
    assert _text("short", truncated=True).line == "short…"
    assert _text("").line == ""


def test_binary_shows_its_leading_bytes_in_hex() -> None:
    assert _binary(b"\x00\xffraw").hex_head == "00 ff 72 61 77"
    head = _binary(bytes(range(40))).hex_head
    assert head == " ".join(f"{i:02x}" for i in range(HEX_HEAD_BYTES)) + "…"
    assert _binary(b"").hex_head == ""
