"""The run loop's policies, driven through hand-written stubs for each stage (no sockets)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from agent_client.errors import (
    AgentTimeoutError,
    AgentUnavailableError,
    FrameError,
    InvalidRequestError,
    ModelOutputError,
    PublishDeniedError,
    PublishError,
    PublishRejectedError,
)
from component.config import build_config
from component.frames import Classification, Frame, Prediction, StageLatency
from component.loop import RunLoop
from component.metrics import Metrics
from component.outbox import ResultOutbox
from component.pipeline import PreparedFrame
from component.results import ModelIdentity

IMAGE = Image.new("RGB", (8, 8))


class ListSource:
    """Frames in order; an Exception item is raised once in its place."""

    name = "list"

    def __init__(self, items: list[Any]) -> None:
        self.items = list(items)

    def next_frame(self) -> Frame | None:
        if not self.items:
            return None
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        return Frame(frame_id=item, timestamp=1700000000.0 + item, source=f"img{item}", image=IMAGE)

    def counts(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class ScriptedPipeline:
    """Raises the scripted errors for a frame id first: a FrameError in prepare(), any other error in infer()
    (keyed by the batch's first frame); then infer() returns a cat for each frame. Records every frame id
    sent to infer() in `calls` and each batch's ids in `batches`."""

    def __init__(self, errors: dict[int, list[Exception]] | None = None) -> None:
        self.errors = errors or {}
        self.calls: list[int] = []
        self.batches: list[list[int]] = []
        self.prepared: list[int] = []

    def prepare(self, frame: Frame) -> PreparedFrame:
        self.prepared.append(frame.frame_id)
        pending = self.errors.get(frame.frame_id, [])
        if pending and isinstance(pending[0], FrameError):
            raise pending.pop(0)
        return PreparedFrame(frame, np.zeros((1, 3), np.float32), 2.0)

    def send(self, batch: list[PreparedFrame]) -> None:
        return None  # nothing is sent ahead: infer() makes each call (test_prefetch covers sending ahead)

    def infer(self, batch: list[PreparedFrame], sent: Any = None) -> list[Classification]:
        ids = [p.frame.frame_id for p in batch]
        self.calls.extend(ids)
        self.batches.append(ids)
        pending = self.errors.get(ids[0], [])
        if pending:
            raise pending.pop(0)
        return [
            Classification(
                p.frame.frame_id,
                p.frame.timestamp,
                p.frame.source,
                (Prediction(281, "tabby", 0.6),),
                StageLatency(1, p.preprocess_ms, 3, 4),
            )
            for p in batch
        ]


class RecordingPublisher:
    name = "recording"

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = failures or []
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.messages.append((topic, payload))

    def close(self) -> None:
        pass


class StubHost:
    """The loop's host: configuration, stages, and `between()` counting its calls (updates are scripted
    as functions of the call number)."""

    def __init__(
        self, items: list[Any], pipeline: ScriptedPipeline, publisher: RecordingPublisher, **config: Any
    ):
        self.config = build_config({"inference_interval": 0.0, **config})
        self.source = ListSource(items)
        self.active: Any = SimpleNamespace(pipeline=pipeline, identity=ModelIdentity("m", "1.0.0", "abc"))
        self.outbox = ResultOutbox(publisher)
        self.metrics = Metrics()
        self.betweens = 0
        self.beats = 0
        self.on_between: dict[int, Any] = {}

    def between(self) -> None:
        self.betweens += 1
        action = self.on_between.get(self.betweens)
        if action is not None:
            action(self)

    def describe_agent(self) -> str:
        return "nothing at /tmp/none.sock"

    def beat(self, allow: float) -> None:
        self.beats += 1


def make_loop(
    items: list[Any], pipeline: ScriptedPipeline, publisher: RecordingPublisher, **config: Any
) -> tuple[RunLoop, StubHost]:
    host = StubHost(items, pipeline, publisher, **config)
    loop = RunLoop(host, threading.Event())  # type: ignore[arg-type]
    loop._backoff.first = loop._backoff._next = loop._backoff.cap = 0.001
    return loop, host


def frame_ids(publisher: RecordingPublisher) -> list[int]:
    return [payload["frame-id"] for _, payload in publisher.messages]


def test_every_frame_is_published_in_order_with_the_contract_keys() -> None:
    publisher = RecordingPublisher()
    loop, _ = make_loop([1, 2, 3], ScriptedPipeline(), publisher)
    loop.run()
    assert frame_ids(publisher) == [1, 2, 3]
    topic, payload = publisher.messages[0]
    assert topic == "gg/sageMakerEdgeManager/image-classification"
    assert payload["inference-type"] == "image-classification"
    assert payload["inference-results"] == [{"Label": "tabby", "Score": "0.6", "ClassId": 281}]
    assert payload["latency-ms"]["total"] == 10


def test_a_bad_frame_is_skipped_and_counted_and_the_loop_goes_on() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({3: [FrameError("cannot preprocess")]})
    loop, _ = make_loop([1, FrameError("truncated"), 3, 4], pipeline, publisher)
    loop.run()
    assert frame_ids(publisher) == [1, 4]
    assert loop.counters.bad_frames == 2 and loop.counters.frames == 4


def test_agent_outage_holds_the_frame_and_never_publishes_an_empty_result() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({2: [AgentUnavailableError("down")] * 3})
    loop, _ = make_loop([1, 2, 3], pipeline, publisher)
    loop.run()
    assert pipeline.calls == [1, 2, 2, 2, 2, 3]
    assert frame_ids(publisher) == [1, 2, 3]
    assert all(payload["inference-results"] for _, payload in publisher.messages)
    assert loop.counters.agent_outages == 1


def test_an_outage_keeps_taking_updates_and_beating_the_watchdog() -> None:
    pipeline = ScriptedPipeline({1: [AgentUnavailableError("down")] * 20})
    loop, host = make_loop([1], pipeline, RecordingPublisher())
    loop.run()
    assert host.betweens >= 20  # between() runs while the batch is held, not only between frames


def test_a_model_swapped_during_an_outage_classifies_the_held_frames_with_its_own_tensors() -> None:
    old = ScriptedPipeline({1: [AgentUnavailableError("down")] * 1000})
    new = ScriptedPipeline()
    publisher = RecordingPublisher()
    loop, host = make_loop([1, 2], old, publisher)
    host.on_between[5] = lambda h: setattr(
        h, "active", SimpleNamespace(pipeline=new, identity=ModelIdentity("n", "2", "def"))
    )
    loop.run()
    assert new.prepared == [1, 2] and new.calls == [1, 2]
    assert [payload["model"]["name"] for _, payload in publisher.messages] == ["n", "n"]


def test_a_slow_agent_is_retried_once_then_the_batch_split_then_a_frame_given_up() -> None:
    publisher = RecordingPublisher()
    slow = AgentTimeoutError("no answer within 5 s")
    pipeline = ScriptedPipeline({1: [slow] * 6, 3: [slow]})
    loop, _ = make_loop([1, 2, 3, 4], pipeline, publisher, batch_size=4)
    loop.run()
    # [1,2,3,4] x2 -> split: [1,2] x2 -> [1] x2 given up, [2] ok; [3,4]: once slow, then ok
    assert pipeline.batches == [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2], [1, 2], [1], [1], [2], [3, 4], [3, 4]]
    assert frame_ids(publisher) == [2, 3, 4]
    assert loop.counters.failed_frames == 1 and loop.counters.agent_timeouts == 7
    assert loop.state == "RUNNING"


def test_non_finite_scores_are_a_failing_model_never_nothing_detected() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({2: [ModelOutputError("NaN scores")]})
    loop, _ = make_loop([1, 2, 3], pipeline, publisher)
    loop.run()
    assert frame_ids(publisher) == [1, 3]  # frame 2 is not published, not even as an empty result
    assert loop.counters.nonfinite_outputs == 1


def test_a_request_the_agent_rejects_fails_that_frame_only() -> None:
    publisher = RecordingPublisher()
    loop, _ = make_loop([1, 2], ScriptedPipeline({1: [InvalidRequestError("wrong shape")]}), publisher)
    loop.run()
    assert frame_ids(publisher) == [2]
    assert loop.counters.failed_frames == 1


def test_unpublished_results_are_kept_and_sent_in_order_later() -> None:
    publisher = RecordingPublisher([PublishError("core gone"), PublishError("core gone")])
    loop, host = make_loop([1, 2, 3], ScriptedPipeline(), publisher)
    loop.run()
    assert frame_ids(publisher) == [1, 2, 3]
    assert host.outbox.publish_failures == 2 and host.outbox.published == 3


def test_a_result_the_core_refuses_for_good_never_blocks_the_ones_behind_it() -> None:
    publisher = RecordingPublisher(
        [PublishDeniedError("not in accessControl"), PublishRejectedError("invalid topic")]
    )
    loop, host = make_loop([1, 2, 3], ScriptedPipeline(), publisher)
    loop.run()
    assert frame_ids(publisher) == [3]
    assert host.outbox.refused == 2 and host.outbox.dropped == 0


def test_max_frames_stops_the_loop() -> None:
    publisher = RecordingPublisher()
    loop, _ = make_loop(list(range(1, 10)), ScriptedPipeline(), publisher, max_frames=4)
    loop.run()
    assert frame_ids(publisher) == [1, 2, 3, 4]


def test_stop_during_an_outage_ends_the_loop() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({1: [AgentUnavailableError("down")] * 10_000})
    loop, _ = make_loop([1], pipeline, publisher)
    loop._backoff.first = loop._backoff._next = loop._backoff.cap = 0.01
    timer = threading.Timer(0.2, loop.stop.set)
    timer.start()
    loop.run()
    timer.join()
    assert publisher.messages == []


def test_frames_go_to_the_model_in_batches_and_are_published_one_by_one_in_order() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline()
    loop, _ = make_loop(list(range(1, 8)), pipeline, publisher, batch_size=3)
    loop.run()
    assert pipeline.batches == [[1, 2, 3], [4, 5, 6], [7]]
    assert frame_ids(publisher) == [1, 2, 3, 4, 5, 6, 7]


def test_a_batch_never_reads_past_max_frames() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline()
    loop, _ = make_loop(list(range(1, 10)), pipeline, publisher, batch_size=3, max_frames=5)
    loop.run()
    assert pipeline.batches == [[1, 2, 3], [4, 5]]
    assert loop.counters.frames == 5


def test_a_bad_frame_leaves_the_rest_of_its_batch_alone() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({2: [FrameError("cannot preprocess")]})
    loop, _ = make_loop([1, 2, FrameError("truncated"), 4, 5, 6], pipeline, publisher, batch_size=3)
    loop.run()
    assert pipeline.batches == [[1], [4, 5, 6]]
    assert frame_ids(publisher) == [1, 4, 5, 6]
    assert loop.counters.bad_frames == 2


def test_an_agent_outage_holds_the_whole_batch() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({1: [AgentUnavailableError("down")] * 2})
    loop, _ = make_loop([1, 2, 3, 4], pipeline, publisher, batch_size=2)
    loop.run()
    assert pipeline.batches == [[1, 2], [1, 2], [1, 2], [3, 4]]
    assert frame_ids(publisher) == [1, 2, 3, 4]
