"""The bounded on-disk outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_bound_drops_the_oldest_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(":memory:", limit=3)
    for index in range(5):
        outbox.put(IotMessage(f"t/{index}", b""))
    assert len(outbox) == 3
    assert outbox.dropped == 2
    head = outbox.head()
    assert head is not None and head.message.topic == "t/2"
    assert "dropped the oldest" in caplog.text
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
        "dropped_oldest": 0,
        "refused": 0,
        "undeliverable": 1,
        "fault": None,
        "fault_for_s": None,
    }
    outbox.close()
