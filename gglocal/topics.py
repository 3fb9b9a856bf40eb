"""MQTT topic names and filters: validation, matching, and filter coverage (for authorization).

Levels are split on ``/``. In a filter, ``+`` matches exactly one level and ``#`` (last level only)
matches the parent level and any number of levels below. Topics starting with ``$`` are not matched
by a leading wildcard.
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535


def _forbidden_character(text: str) -> str | None:
    """What MQTT brokers refuse in a UTF-8 string (mosquitto disconnects the client): NUL, surrogates,
    control characters U+0001..U+001F and U+007F..U+009F, and Unicode non-characters."""
    for char in text:
        code = ord(char)
        if code == 0:
            return "NUL"
        if 0xD800 <= code <= 0xDFFF:
            return f"the lone surrogate U+{code:04X}"
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return f"the control character U+{code:04X}"
        if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            return f"the non-character U+{code:04X}"
    return None


def validate_topic(topic: str) -> str | None:
    """Why ``topic`` is not a valid topic name to publish to, or None when it is."""
    if not topic:
        return "topic must not be empty"
    if bad := _forbidden_character(topic):
        return f"topic must not contain {bad}"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"topic is longer than {MAX_TOPIC_BYTES} bytes"
    if "+" in topic or "#" in topic:
        return "a topic to publish to must not contain the wildcards + or #"
    return None


def validate_filter(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid subscription filter, or None when it is."""
    if not topic_filter:
        return "topic filter must not be empty"
    if bad := _forbidden_character(topic_filter):
        return f"topic filter must not contain {bad}"
    if len(topic_filter.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"topic filter is longer than {MAX_TOPIC_BYTES} bytes"
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "# must be a whole level and the last one"
        if "+" in level and level != "+":
            return "+ must be a whole level"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when the concrete ``topic`` matches ``topic_filter`` (which may hold + and #)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def filter_covers(outer: str, inner: str) -> bool:
    """True when every topic matched by filter ``inner`` is also matched by filter ``outer``.

    With a concrete topic as ``inner`` this is :func:`topic_matches`. A ``+`` in ``inner`` is covered only by
    ``+`` or ``#`` in ``outer``; a ``#`` in ``inner`` only by ``#``.
    """
    outer_levels = outer.split("/")
    inner_levels = inner.split("/")
    for index, level in enumerate(outer_levels):
        if level == "#":
            return True
        if index >= len(inner_levels):
            return False
        other = inner_levels[index]
        if other == "#":
            return False
        if level == "+":
            continue
        if level != other:
            return False
    return len(outer_levels) == len(inner_levels)
