"""What makes an MQTT topic publishable through AWS IoT Core: MQTT 3.1.1's rules for topic names and AWS IoT
Core's limits, checked before a topic is used, so that a result is never handed to the core on a topic it
refuses for good.

- MQTT: a UTF-8 string of at least one character, no NUL (U+0000), no wildcards (+ or #) in a name to
  publish to; the control characters U+0001..U+001F and U+007F..U+009F should not be used (refused here).
- AWS IoT Core: at most 256 bytes, at most 7 forward slashes (8 levels); topics starting with $ are reserved
  (for example $aws/...).
"""

from __future__ import annotations

import re

MAX_TOPIC_BYTES = 256
MAX_SLASHES = 7
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def topic_problem(topic: str) -> str | None:
    """Why topic cannot be published to, or None when it can."""
    if not topic:
        return "must be a non-empty MQTT topic"
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8 (it holds a lone surrogate)"
    if _CONTROL.search(topic):
        return "must not contain NUL or control characters"
    if "+" in topic or "#" in topic:
        return "must not contain the MQTT wildcards + or # (a topic to publish to is a name, not a filter)"
    if size > MAX_TOPIC_BYTES:
        return f"is {size} bytes; AWS IoT Core takes topics of at most {MAX_TOPIC_BYTES} bytes"
    if topic.count("/") > MAX_SLASHES:
        return f"has {topic.count('/')} slashes; AWS IoT Core allows at most {MAX_SLASHES} (8 levels)"
    if topic.startswith("$"):
        return "starts with $, which AWS IoT Core reserves (for example $aws/...)"
    return None
