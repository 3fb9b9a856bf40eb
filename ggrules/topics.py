"""MQTT topic names and filters, and what AWS IoT Core adds to them, written down once.

MQTT 3.1.1: levels are split on ``/``; in a filter ``+`` matches exactly one level and ``#`` (the last level
only) matches the parent level and any number of levels below; topics starting with ``$`` are not matched by
a leading wildcard. A topic is a UTF-8 string of at least one character without NUL; brokers (mosquitto)
disconnect a client that sends control characters, lone surrogates or non-characters, so they are refused
here too. AWS IoT Core: at most 256 bytes, at most 7 slashes (8 levels), ``$`` topics reserved.

gglocal's IPC server and MQTT bridge check with ``validate_topic``/``validate_filter`` (what the core and a
broker refuse); the component checks its own topics with ``iot_topic_problem`` before it uses them, so a
result is never handed to the core on a topic refused for good.
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535  # MQTT's UTF-8 string length field
IOT_MAX_TOPIC_BYTES = 256
IOT_MAX_SLASHES = 7


def forbidden_character(text: str) -> str | None:
    """What MQTT brokers refuse in a UTF-8 string: NUL, lone surrogates, the control characters
    U+0001..U+001F and U+007F..U+009F, and Unicode non-characters. None when there is none."""
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


def _string_problem(text: str, what: str) -> str | None:
    if not text:
        return f"{what} must not be empty"
    if bad := forbidden_character(text):
        return f"{what} must not contain {bad}"
    if len(text.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"{what} is longer than {MAX_TOPIC_BYTES} bytes"
    return None


def validate_topic(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic name to publish to, or None when it is."""
    if problem := _string_problem(topic, "topic"):
        return problem
    if "+" in topic or "#" in topic:
        return "a topic to publish to must not contain the wildcards + or #"
    return None


def validate_filter(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid MQTT subscription filter, or None when it is."""
    if problem := _string_problem(topic_filter, "topic filter"):
        return problem
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "# must be a whole level and the last one"
        if "+" in level and level != "+":
            return "+ must be a whole level"
    return None


def iot_topic_problem(topic: str) -> str | None:
    """Why AWS IoT Core (through a Greengrass core) would refuse to publish on ``topic``, or None: MQTT's
    rules for a topic name, at most 256 bytes and 7 slashes, not a reserved ``$`` topic. Worded to follow a
    key name."""
    if not topic:
        return "must be a non-empty MQTT topic"
    if bad := forbidden_character(topic):
        return f"must not contain {bad}"
    if "+" in topic or "#" in topic:
        return "must not contain the MQTT wildcards + or # (a topic to publish to is a name, not a filter)"
    size = len(topic.encode("utf-8"))
    if size > IOT_MAX_TOPIC_BYTES:
        return f"is {size} bytes; AWS IoT Core takes topics of at most {IOT_MAX_TOPIC_BYTES} bytes"
    if topic.count("/") > IOT_MAX_SLASHES:
        return f"has {topic.count('/')} slashes; AWS IoT Core allows at most {IOT_MAX_SLASHES} (8 levels)"
    if topic.startswith("$"):
        return "starts with $, which AWS IoT Core reserves (for example $aws/...)"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when the concrete ``topic`` (no wildcards) matches ``topic_filter`` (which may hold + and #)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    return filter_covers(topic_filter, topic)


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
