"""MQTT topic names, topic filters, client ids and usernames, by the protocol's rules.

Topic names and filters are 1 to 65,535 UTF-8 bytes without U+0000. Names (for
publishing) have no wildcards. In filters `#` is last and alone in its level and `+`
fills a whole level. `$share/<group>/<filter>` is a shared subscription. Client ids
and usernames follow MQTT's rules only; Mosquitto's ACL rules for them (no `+`,
`#`, `/`) apply to the users the portal manages on Mosquitto (`acl.models`).

Mosquitto also drops a client whose SUBSCRIBE holds a filter of more than 200
levels or a string with a control character: such a filter would put the portal's
connection into a reconnect loop, so they are refused here as input.

Topics starting with `$` belong to the broker: `$SYS/...` is its statistics and
`$CONTROL/...` its control API (Dynamic Security), reached with whatever
credentials the portal's connection holds. `check_publish_target` and
`check_subscribe_target` keep every path that sends or subscribes away from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

MAX_TOPIC_BYTES = 65535
# Mosquitto's TOPIC_HIERARCHY_LIMIT: a SUBSCRIBE past it disconnects the client.
MAX_TOPIC_LEVELS = 200
SHARE_PREFIX = "$share/"
CONTROL_PREFIX = "$CONTROL"


def _check_characters(value: str, what: str) -> None:
    """Mosquitto drops a client whose strings hold a control character, a
    non-character or a UTF-16 surrogate (its UTF-8 check): refuse them here, as
    input, not as a lost connection later."""
    for ch in value:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            raise ValidationError(
                _("%s is not valid UTF-8 (it holds a surrogate).") % what,
                code="utf8",
            )
        if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFF) in (0xFFFE, 0xFFFF):
            raise ValidationError(
                _(
                    "%s must not contain Unicode non-characters (U+FDD0-U+FDEF, "
                    "U+xFFFE, U+xFFFF): Mosquitto refuses them."
                )
                % what,
                code="noncharacter",
            )
        if code < 0x20 or 0x7F <= code <= 0x9F:
            raise ValidationError(
                _(
                    "%s must not contain control characters (U+0001-U+001F, "
                    "U+007F-U+009F): Mosquitto refuses them."
                )
                % what,
                code="control",
            )


def _check_levels(value: str, what: str) -> None:
    levels = value.count("/") + 1
    if levels > MAX_TOPIC_LEVELS:
        raise ValidationError(
            _(
                "%(what)s has %(levels)d levels; Mosquitto takes at most %(max)d "
                "(it disconnects a client that sends more)."
            )
            % {"what": what, "levels": levels, "max": MAX_TOPIC_LEVELS},
            code="too_many_levels",
        )


def _check_common(value: str, what: str) -> None:
    if not isinstance(value, str) or value == "":
        raise ValidationError(_("%s must not be empty.") % what, code="empty")
    if "\x00" in value:
        raise ValidationError(_("%s must not contain NUL (U+0000).") % what, code="nul")
    _check_characters(value, what)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        # Unreachable after _check_characters (only surrogates fail), kept as a
        # guard should that check change.
        raise ValidationError(_("%s is not valid UTF-8.") % what, code="utf8") from None
    if size > MAX_TOPIC_BYTES:
        raise ValidationError(
            _("%(what)s is longer than %(max)d UTF-8 bytes.")
            % {"what": what, "max": MAX_TOPIC_BYTES},
            code="too_long",
        )
    _check_levels(value, what)


def validate_topic_text(value: str) -> None:
    """Text that becomes (part of) a topic or filter, wildcards or templates
    allowed: the characters, size and level count the broker accepts."""
    if value:
        _check_common(value, _("Topic"))


def validate_topic_name(value: str) -> None:
    """A topic to publish to: no wildcards."""
    _check_common(value, _("Topic"))
    if "+" in value or "#" in value:
        raise ValidationError(
            _("A topic to publish to must not contain the wildcards + or #."),
            code="wildcard",
        )


@dataclass(frozen=True)
class ParsedFilter:
    filter: str
    share_group: str | None = None

    @property
    def subscription(self) -> str:
        """What to send in SUBSCRIBE."""
        if self.share_group:
            return f"{SHARE_PREFIX}{self.share_group}/{self.filter}"
        return self.filter


def _check_filter_levels(value: str) -> None:
    levels = value.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValidationError(
                _("# must be the last level of a filter and stand alone (“a/#”)."),
                code="hash_position",
            )
        if "+" in level and level != "+":
            raise ValidationError(
                _("+ must fill a whole level of a filter (“a/+/c”, not “a+”)."),
                code="plus_position",
            )


def validate_share_group(group: str) -> None:
    """A `$share` group name: non-empty, no `/`, `+` or `#`, and characters
    Mosquitto accepts (a control character in it disconnects the client)."""
    if not isinstance(group, str) or not group or any(ch in group for ch in "/+#"):
        raise ValidationError(
            _("A shared subscription group must be non-empty without /, + or #."),
            code="share_group",
        )
    if "\x00" in group:
        raise ValidationError(
            _("A shared subscription group must not contain NUL (U+0000)."),
            code="nul",
        )
    _check_characters(group, _("A shared subscription group"))


def parse_topic_filter(value: str) -> ParsedFilter:
    """Validate a filter (maybe `$share/<group>/<filter>`) and split out the group."""
    _check_common(value, _("Topic filter"))
    if value.startswith(SHARE_PREFIX):
        rest = value[len(SHARE_PREFIX) :]
        group, sep, inner = rest.partition("/")
        validate_share_group(group)
        if not sep or not inner:
            raise ValidationError(
                _("A shared subscription needs a filter: $share/<group>/<filter>."),
                code="share_filter",
            )
        _check_filter_levels(inner)
        return ParsedFilter(inner, group)
    _check_filter_levels(value)
    return ParsedFilter(value)


def validate_topic_filter(value: str) -> None:
    parse_topic_filter(value)


def is_control_topic(topic: str) -> bool:
    """Whether `topic` (a name or a filter, maybe `$share/<group>/...`) lies under
    `$CONTROL`, the broker's control API."""
    if topic.startswith(SHARE_PREFIX):
        parts = topic.split("/", 2)
        topic = parts[2] if len(parts) == 3 else ""
    return topic == CONTROL_PREFIX or topic.startswith(CONTROL_PREFIX + "/")


def check_publish_target(topic: str, *, may_control: bool) -> None:
    """Refuse a publish to the broker's own `$` topics.

    `$CONTROL/...` is the broker's control API: a message there runs with the
    portal connection's credentials, which may be the Dynamic Security admin's. Only
    a product admin (`may_control`) sends there; other `$` topics (`$SYS`, ...)
    are the broker's own and nobody publishes to them through the portal.
    """
    if not topic.startswith("$"):
        return
    if is_control_topic(topic):
        if may_control:
            return
        raise ValidationError(
            _(
                "Topics under $CONTROL/ are the broker's control API: only a "
                "product admin may publish there."
            ),
            code="control_topic",
        )
    raise ValidationError(
        _(
            "Topics starting with $ belong to the broker ($SYS, ...): the portal "
            "does not publish to them."
        ),
        code="dollar_topic",
    )


def check_subscribe_target(topic_filter: str, *, may_control: bool) -> None:
    """Refuse a subscription under `$CONTROL` below product admin: its requests
    carry new MQTT passwords in clear, its responses the broker's accounts."""
    if is_control_topic(topic_filter) and not may_control:
        raise ValidationError(
            _(
                "Filters under $CONTROL/ read the broker's control API (passwords "
                "included): only a product admin may subscribe there."
            ),
            code="control_topic",
        )


def topic_matches(filter_: str, topic: str) -> bool:
    """Whether `topic` matches `filter_`, as a broker decides.

    Wildcards at the first level never match topics starting with `$`.
    """
    filter_levels = filter_.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def _validate_identity(value: str, what: str, max_bytes: int) -> None:
    """MQTT's own rules (UTF-8 without NUL or control characters, bounded). Other
    brokers take what Mosquitto's ACLs refuse (RabbitMQ's `vhost:user`, with `/`
    as the default vhost): those rules belong to the users the portal manages on
    Mosquitto (`acl.models`)."""
    if "\x00" in value:
        raise ValidationError(_("%s must not contain NUL (U+0000).") % what, code="nul")
    _check_characters(value, what)
    if len(value.encode("utf-8")) > max_bytes:
        raise ValidationError(
            _("%(what)s is longer than %(max)d UTF-8 bytes.")
            % {"what": what, "max": max_bytes},
            code="too_long",
        )


def validate_client_id(value: str) -> None:
    """Client ids: any ids brokers accept (MQTT's rules only)."""
    if value:
        _validate_identity(value, _("Client id"), 128)


def validate_mqtt_username(value: str) -> None:
    if value:
        _validate_identity(value, _("Username"), 256)
