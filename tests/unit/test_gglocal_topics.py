"""MQTT topic filter matching and validation."""

from __future__ import annotations

import pytest

from gglocal.topics import filter_covers, topic_matches, validate_filter, validate_topic


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
