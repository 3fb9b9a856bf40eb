"""MQTT topic filter matching and validation."""

from __future__ import annotations

import pytest

from ggrules.topics import filter_covers, topic_matches, validate_filter, validate_topic


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+/c", "a/x/c", True),
        ("+/+", "a/b", True),
        ("+", "/a", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "anything/at/all", True),
        ("#", "$SYS/broker", False),
        ("+/broker", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
        ("a/+", "a/", True),
        (
            "gg/sageMakerEdgeManager/image-classification",
            "gg/sageMakerEdgeManager/image-classification",
            True,
        ),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("topic", ["", "a/+", "a/#", "a\x00b"])
def test_invalid_publish_topics(topic: str) -> None:
    assert validate_topic(topic) is not None


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "a#", "a/b+", "a\x00"])
def test_invalid_filters(topic_filter: str) -> None:
    assert validate_filter(topic_filter) is not None


@pytest.mark.parametrize("topic_filter", ["a/b", "a/+/c", "#", "a/#", "+"])
def test_valid_filters(topic_filter: str) -> None:
    assert validate_filter(topic_filter) is None


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("a/#", "a/+/c", True),
        ("a/+", "a/+", True),
        ("a/+", "a/#", False),
        ("a/b", "a/+", False),
        ("#", "x/#", True),
        ("a/+/c", "a/b/c", True),
    ],
)
def test_filter_coverage(outer: str, inner: str, expected: bool) -> None:
    assert filter_covers(outer, inner) is expected


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("a/\x00", "NUL"),
        ("a/\x01b", "control character U+0001"),
        ("a/\x7f", "control character U+007F"),
        ("a/\x85", "control character U+0085"),
        ("a/\ud800", "lone surrogate U+D800"),
        ("a/\ufdd0", "non-character U+FDD0"),
        ("a/\uffff", "non-character U+FFFF"),
        ("a/\U0001fffe", "non-character U+1FFFE"),
    ],
)
def test_characters_mqtt_brokers_refuse_are_refused_in_topics_and_filters(topic: str, reason: str) -> None:
    # mosquitto ends the connection of a client that sends any of these: they would block the outbox head
    assert validate_topic(topic) == f"topic must not contain the {reason}".replace("the NUL", "NUL")
    assert reason in (validate_filter(topic) or "")


def test_other_unicode_is_a_valid_topic() -> None:
    assert validate_topic("caméra/東京/\U0001f600/\u00a0") is None
