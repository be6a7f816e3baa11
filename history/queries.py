"""Reading message history: MQTT filters in SQL, cursor pages, payload prefixes.

MQTT filters are translated to SQL: the literal prefix before the first wildcard
narrows by index, a regular expression does the rest (`+` one level, `#` any rest
including none), and first-level wildcards never match `$` topics.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce, Length, Substr
from django.utils.translation import gettext as _

from brokers.models import Broker
from history.models import StoredMessage, Topic
from mqttadmin.lib.payloads import exact_payload, parsed_json, properties_shown
from mqttadmin.lib.times import parse_iso_time
from mqttadmin.lib.topics import parse_topic_filter

MAX_PAGE = 1000
DEFAULT_PAGE = 100
# A list (API page, Activity tab, topic page) reads at most this many characters
# (bytes for binary) of each payload from the database; a longer one is cut
# (`payload_cut`) and read whole through the message's own endpoint or an export.
LIST_PAYLOAD_CHARS = 8 * 1024
# And one page of a list holds at most this many characters of payloads and
# topics: past it the page ends early and its cursor continues from there.
PAGE_BUDGET_CHARS = 1024 * 1024


def filter_to_q(topic_filter: str, field: str = "topic") -> Q:
    """A Q object matching the topics an MQTT filter matches."""
    parsed = parse_topic_filter(topic_filter)
    if parsed.share_group:
        raise ValidationError(_("History filters take no $share prefix."))
    levels = parsed.filter.split("/")
    if "+" not in levels and "#" not in levels:
        return Q(**{field: parsed.filter})
    literal: list[str] = []
    for level in levels:
        if level in ("+", "#"):
            break
        literal.append(level)
    pattern_parts: list[str] = []
    for index, level in enumerate(levels):
        if level == "+":
            pattern_parts.append("[^/]*")
        elif level == "#":
            # `a/#` matches `a` itself too: the separator belongs to the optional rest.
            if pattern_parts:
                pattern_parts[-1] += "(/.*)?"
            else:
                pattern_parts.append(".*")
            break
        else:
            pattern_parts.append(re.escape(level))
        if index < len(levels) - 1 and levels[index + 1] != "#":
            pattern_parts[-1] += "/"
    regex = "^" + "".join(pattern_parts) + "$"
    condition = Q(**{f"{field}__regex": regex})
    if literal:
        prefix = "/".join(literal)
        condition &= Q(**{f"{field}__startswith": prefix})
    if levels[0] in ("+", "#"):
        condition &= ~Q(**{f"{field}__startswith": "$"})
    return condition


@dataclass(frozen=True)
class HistoryQuery:
    """What a history request asks for; parsed and validated from query params."""

    topic: str | None = None
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    search: str | None = None

    @classmethod
    def from_params(cls, params: Any) -> HistoryQuery:
        errors: dict[str, str] = {}
        topic = (params.get("topic") or "").strip() or None
        if topic:
            try:
                filter_to_q(topic)
            except ValidationError as exc:
                errors["topic"] = " ".join(exc.messages)
        since = parse_iso_time(params.get("since"), "since", errors)
        until = parse_iso_time(params.get("until"), "until", errors)
        if since and until and since > until:
            errors["until"] = _("until is before since.")
        if errors:
            raise ValidationError(errors)
        return cls(topic, since, until, (params.get("search") or "").strip() or None)

    def apply(self, queryset: QuerySet[StoredMessage]) -> QuerySet[StoredMessage]:
        if self.topic:
            queryset = queryset.filter(filter_to_q(self.topic))
        if self.since:
            queryset = queryset.filter(received_at__gte=self.since)
        if self.until:
            queryset = queryset.filter(received_at__lte=self.until)
        if self.search:
            queryset = queryset.filter(
                Q(text__icontains=self.search) | Q(topic__icontains=self.search)
            )
        return queryset


def messages_for(broker: Broker, query: HistoryQuery) -> QuerySet[StoredMessage]:
    """Newest first; the id order is the order the runtime stored them in."""
    return query.apply(StoredMessage.objects.filter(broker=broker)).order_by("-id")


def encode_cursor(message_id: int) -> str:
    return base64.urlsafe_b64encode(f"m{message_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
        if not raw.startswith("m"):
            raise ValueError
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError(
            {"cursor": _("The cursor is not one this API gave.")}
        ) from None


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE
    if not str(value).isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise ValidationError(
            {"limit": _("limit is a whole number from 1 to %d.") % MAX_PAGE}
        )
    return int(value)


def page_of(
    queryset: QuerySet[StoredMessage],
    limit: int,
    cursor: str | None,
    budget: int | None = None,
) -> tuple[list[StoredMessage], str | None]:
    """One page, newest first, and the cursor of the next (older) page.

    With a `budget` (characters of topics and payload prefixes, see
    `with_payload_heads`), the page ends early once it is spent (never empty).
    """
    if cursor:
        queryset = queryset.filter(id__lt=decode_cursor(cursor))
    rows = list(queryset[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    if budget is not None:
        spent = 0
        for index, row in enumerate(rows):
            spent += len(row.topic) + _head_length(row)
            if spent > budget and index > 0:
                rows, has_more = rows[:index], True
                break
    return rows, encode_cursor(rows[-1].id) if has_more and rows else None


def with_payload_heads(
    queryset: QuerySet[StoredMessage], chars: int = LIST_PAYLOAD_CHARS
) -> QuerySet[StoredMessage]:
    """The messages with only a prefix of each payload read from the database.

    One character more than shown is read, so a longer payload is known to be cut.
    The whole `text`/`data` columns are deferred: a list of 20 MB payloads reads a
    few kilobytes per row. Rows stored before sizes were kept take their size from
    the column's length (characters, for text).
    """
    return queryset.defer("text", "data").annotate(
        text_head=Substr("text", 1, chars + 1),
        data_head=Substr("data", 1, chars + 1, output_field=models.BinaryField()),
        stored_size=Coalesce(
            F("payload_size"),
            Length("text"),
            Length("data"),
            output_field=models.BigIntegerField(),
        ),
    )


def _head_length(message: StoredMessage) -> int:
    head = getattr(message, "text_head", None)
    if head is None:
        head = getattr(message, "data_head", None)
    return len(head) if head is not None else 0


@dataclass(frozen=True)
class StoredPayload:
    """What a reader has of a stored payload: all of it, or a list's prefix."""

    text: str | None
    data: bytes | None
    size: int
    truncated: bool  # history kept only a prefix (the broker's cap)
    cut: bool  # this read has only a prefix of what history kept


def stored_payload(
    message: StoredMessage, chars: int = LIST_PAYLOAD_CHARS
) -> StoredPayload:
    """The payload of a message read whole, or through `with_payload_heads`."""
    if hasattr(message, "text_head"):
        # Annotated by with_payload_heads: the model declares no such fields.
        heads: Any = message
        text = heads.text_head
        data = bytes(heads.data_head) if heads.data_head is not None else None
        cut = len(text if text is not None else data or b"") > chars
        if cut:
            text = text[:chars] if text is not None else None
            data = data[:chars] if data is not None else None
        size = heads.stored_size
    else:
        text = message.text
        data = bytes(message.data) if message.data is not None else None
        cut = False
        size = message.payload_size
        if size is None:
            size = len(text.encode("utf-8")) if text is not None else len(data or b"")
    return StoredPayload(text, data, int(size or 0), message.payload_truncated, cut)


def message_as_dict(
    message: StoredMessage, chars: int = LIST_PAYLOAD_CHARS, *, parsed: bool = False
) -> dict[str, Any]:
    """A message as the API and exports give it, its payload byte-exact: the text
    as received (or base64 for binary), never re-encoded from a parsed value.

    `payload_is_json` says the whole payload is strict JSON; with `parsed` the
    parsed value comes too, as `payload_json` (null when it is not strict JSON).
    A payload history kept only part of is `payload_truncated`; one a list read
    only part of is `payload_cut`: neither is JSON, their document is incomplete.
    """
    stored = stored_payload(message, chars)
    exact = exact_payload(
        stored.data, stored.text, complete=not (stored.truncated or stored.cut)
    )
    row: dict[str, Any] = {
        "id": message.id,
        "topic": message.topic,
        "payload": exact.text,
        "payload_encoding": exact.encoding,
        "payload_is_json": exact.is_json,
        "payload_size": stored.size,
        "payload_truncated": stored.truncated,
        "payload_cut": stored.cut,
        "qos": message.qos,
        "retain": message.retain,
        "properties": properties_shown(message.properties),
        "received_at": message.received_at.isoformat(),
    }
    if parsed:
        value = parsed_json(exact.text) if exact.is_json else None
        row["payload_json"] = value.value if value is not None else None
    return row


_FLAG_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False}
_FLAG_VALUES |= {"no": False, "": False}


def parse_flag(params: Any, name: str) -> bool:
    """A yes/no query parameter (1/0, true/false, yes/no; absent is no)."""
    value = str(params.get(name) or "").strip().lower()
    if value not in _FLAG_VALUES:
        raise ValidationError({name: _("%s is 1 or 0 (true or false).") % name})
    return _FLAG_VALUES[value]


def topics_for(broker: Broker, topic_filter: str | None) -> QuerySet[Topic]:
    queryset = Topic.objects.filter(broker=broker)
    if topic_filter:
        queryset = queryset.filter(filter_to_q(topic_filter))
    return queryset.order_by("topic")
