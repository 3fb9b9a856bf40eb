"""The bounded on-disk outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from gglocal.errors import OutboxError
from gglocal.iotcore import IotMessage, StdoutIotCore
from gglocal.outbox import Outbox


def test_messages_come_out_in_order_and_survive_reopening(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", limit=10)
    for index in range(3):
        outbox.put(IotMessage(f"t/{index}", b"p", 1))
    head = outbox.head()
    assert head is not None and head.message.topic == "t/0"
    outbox.ack(head.seq)
    outbox.close()
    reopened = Outbox(tmp_path / "o.sqlite", limit=10)
    assert len(reopened) == 2
    head = reopened.head()
    assert head is not None and head.message == IotMessage("t/1", b"p", 1, False)
    reopened.close()


def test_a_full_spool_drops_queued_qos0_first_and_then_refuses_qos1_keeping_what_it_has(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As the Java nucleus's spooler: bounded in payload bytes, QoS 0 goes to make room, QoS 1 never."""
    outbox = Outbox(":memory:", limit=30)
    outbox.put(IotMessage("t/q1-a", b"x" * 10, 1))
    outbox.put(IotMessage("t/q0-a", b"x" * 10, 0))
    outbox.put(IotMessage("t/q0-b", b"x" * 5, 0))
    outbox.put(IotMessage("t/q1-b", b"x" * 10, 1))  # 35 bytes: the oldest QoS 0 message goes
    assert outbox.dropped == 1 and "dropped 1 queued QoS 0" in caplog.text
    outbox.put(IotMessage("t/q1-c", b"x" * 10, 1))  # 35 again: the other QoS 0 message goes
    assert outbox.dropped == 2
    with pytest.raises(OutboxError, match="spool is full") as full:
        outbox.put(IotMessage("t/q1-d", b"x", 1))  # only QoS 1 left: refused, nothing dropped
    assert full.value.error_name == "ServiceError"
    with pytest.raises(OutboxError, match="larger than the whole spool"):
        outbox.put(IotMessage("t/big", b"x" * 31, 0))
    small = Outbox(":memory:", limit=30)
    small.put(IotMessage("t/q0", b"x" * 10, 0))
    with pytest.raises(OutboxError, match="larger than the whole spool"):
        small.put(IotMessage("t/big", b"x" * 31, 1))
    assert len(small) == 1 and small.dropped == 0  # refused before any QoS 0 message is dropped for it
    small.close()
    topics = []
    after = 0
    while (entry := outbox.head(after)) is not None:
        topics.append(entry.message.topic)
        after = entry.seq
    assert topics == ["t/q1-a", "t/q1-b", "t/q1-c"]
    assert (outbox.refused, outbox.status()["dropped_qos0"]) == (2, 2)
    head = outbox.head()
    assert head is not None and outbox.ack(head.seq)
    outbox.put(IotMessage("t/q1-d", b"x", 1))  # room again once one was delivered
    assert len(outbox) == 3
    outbox.close()


def test_waits_are_bounded() -> None:
    outbox = Outbox(":memory:")
    assert outbox.wait_for_message(0.01) is False
    assert outbox.wait_until_empty(0.01) is True
    outbox.close()


def test_stdout_stand_in_prints_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    core = StdoutIotCore()
    core.publish(IotMessage("a/b", b'{"x": 1}', 1))
    core.publish(IotMessage("bin", b"\xff\x00", 0))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '{"topic": "a/b", "qos": 1, "retain": false, "payload": "{\\"x\\": 1}"}'
    assert '"payloadBase64": "/wA="' in lines[1]


def test_head_after_a_cursor_skips_what_was_sent_and_status_counts() -> None:
    outbox = Outbox(":memory:")
    for index in range(3):
        outbox.put(IotMessage(f"t/{index}", b"p", 1))
    first = outbox.head()
    assert first is not None
    second = outbox.head(after=first.seq)
    assert second is not None and second.message.topic == "t/1"
    assert outbox.drop(first.seq, "test") and outbox.ack([second.seq])
    assert outbox.status() == {
        "queued": 1,
        "dropped_qos0": 0,
        "refused": 0,
        "undeliverable": 1,
        "fault": None,
        "fault_for_s": None,
    }
    outbox.close()
