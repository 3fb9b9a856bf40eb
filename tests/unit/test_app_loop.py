"""The run loop's policies, driven through hand-written stubs for each stage (no sockets)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

from agent_client.errors import (
    AgentUnavailableError,
    FrameError,
    InvalidRequestError,
    PublishDeniedError,
    PublishError,
)
from component.app import InferenceApp
from component.config import build_config
from component.frames import Classification, Frame, Prediction, StageLatency
from component.health import LifecycleReporter
from component.pipeline import PreparedFrame
from component.results import ModelIdentity

from ..helpers import RecordingStateSender

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

    def prepare(self, frame: Frame) -> PreparedFrame:
        pending = self.errors.get(frame.frame_id, [])
        if pending and isinstance(pending[0], FrameError):
            raise pending.pop(0)
        return PreparedFrame(frame, np.zeros((1, 3), np.float32), 2.0)

    def infer(self, batch: list[PreparedFrame]) -> list[Classification]:
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


def make_app(
    items: list[Any],
    pipeline: ScriptedPipeline,
    publisher: RecordingPublisher,
    lifecycle: LifecycleReporter | None = None,
    **config: Any,
) -> InferenceApp:
    app = InferenceApp(
        build_config({"inference_interval": 0.0, **config}), threading.Event(), lifecycle=lifecycle
    )
    app.source, app.pipeline, app.publisher = ListSource(items), pipeline, publisher  # type: ignore[assignment]
    app.identity = ModelIdentity("m", "1.0.0", "abc")
    app._backoff.first = app._backoff._next = 0.001
    return app


def frame_ids(publisher: RecordingPublisher) -> list[int]:
    return [payload["frame-id"] for _, payload in publisher.messages]


def test_every_frame_is_published_in_order_with_the_contract_keys() -> None:
    publisher = RecordingPublisher()
    app = make_app([1, 2, 3], ScriptedPipeline(), publisher)
    app.run()
    assert frame_ids(publisher) == [1, 2, 3]
    topic, payload = publisher.messages[0]
    assert topic == "gg/sageMakerEdgeManager/image-classification"
    assert payload["inference-type"] == "image-classification"
    assert payload["inference-results"] == [{"Label": "tabby", "Score": "0.6", "ClassId": 281}]
    assert payload["latency-ms"]["total"] == 10


def test_a_bad_frame_is_skipped_and_counted_and_the_loop_goes_on() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({3: [FrameError("cannot preprocess")]})
    app = make_app([1, FrameError("truncated"), 3, 4], pipeline, publisher)
    app.run()
    assert frame_ids(publisher) == [1, 4]
    assert app.counters.bad_frames == 2 and app.counters.frames == 4


def test_agent_outage_holds_the_frame_and_never_publishes_an_empty_result() -> None:
    publisher = RecordingPublisher()
    outage = [AgentUnavailableError("down")] * 3
    pipeline = ScriptedPipeline({2: list(outage)})
    app = make_app([1, 2, 3], pipeline, publisher)
    app.run()
    assert pipeline.calls == [1, 2, 2, 2, 2, 3]
    assert frame_ids(publisher) == [1, 2, 3]
    assert all(payload["inference-results"] for _, payload in publisher.messages)
    assert app.counters.agent_outages == 1


def test_a_request_the_agent_rejects_fails_that_frame_only() -> None:
    publisher = RecordingPublisher()
    app = make_app([1, 2], ScriptedPipeline({1: [InvalidRequestError("wrong shape")]}), publisher)
    app.run()
    assert frame_ids(publisher) == [2]
    assert app.counters.failed_frames == 1


def test_unpublished_results_are_kept_and_sent_in_order_later() -> None:
    publisher = RecordingPublisher([PublishError("core gone"), PublishError("core gone")])
    app = make_app([1, 2, 3], ScriptedPipeline(), publisher)
    app.run()
    assert frame_ids(publisher) == [1, 2, 3]
    assert app.counters.publish_failures == 2 and app.counters.published == 3


def test_a_denied_topic_is_dropped_not_retried_forever() -> None:
    publisher = RecordingPublisher([PublishDeniedError("not in accessControl")])
    app = make_app([1, 2], ScriptedPipeline(), publisher)
    app.run()
    assert frame_ids(publisher) == [2]
    assert app.counters.dropped_results == 1


def test_max_frames_stops_the_loop() -> None:
    publisher = RecordingPublisher()
    app = make_app(list(range(1, 10)), ScriptedPipeline(), publisher, max_frames=4)
    app.run()
    assert frame_ids(publisher) == [1, 2, 3, 4]


def test_stop_during_an_outage_ends_the_loop() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({1: [AgentUnavailableError("down")] * 10_000})
    app = make_app([1], pipeline, publisher)
    app._backoff.first = app._backoff._next = 0.01
    timer = threading.Timer(0.2, app.stop)
    timer.start()
    app.run()
    timer.join()
    assert publisher.messages == []


class ScriptedUpdates:
    """The run loop's view of the core: returns the scripted item at its call number, None otherwise."""

    def __init__(self, script: dict[int, Any]) -> None:
        self.script, self.calls = script, 0

    def __call__(self) -> Any:
        self.calls += 1
        item = self.script.get(self.calls)
        if isinstance(item, Exception):
            raise item
        return item


def test_a_configuration_update_changes_topic_and_threshold_between_frames() -> None:
    from agent_client.errors import ConfigError

    publisher = RecordingPublisher()
    new = build_config({"inference_interval": 0.0, "topic": "new/topic", "score_threshold": 0.9})
    app = make_app([1, 2, 3], ScriptedPipeline(), publisher)
    app._updates = ScriptedUpdates({2: ConfigError("TopK='x'"), 3: new})
    app.run()
    topics = [topic for topic, _ in publisher.messages]
    assert topics == ["gg/sageMakerEdgeManager/image-classification"] * 2 + ["new/topic"]
    assert app.pipeline.threshold == 0.9  # type: ignore[attr-defined]
    assert app.config.topic == "new/topic"


def test_an_update_naming_a_missing_source_keeps_the_last_good_configuration(tmp_path: Any) -> None:
    publisher = RecordingPublisher()
    bad = build_config({"inference_interval": 0.0, "image_directory": tmp_path / "missing", "topic": "x/y"})
    app = make_app([1, 2], ScriptedPipeline(), publisher)
    app._updates = ScriptedUpdates({1: bad})
    app.run()
    assert [topic for topic, _ in publisher.messages] == ["gg/sageMakerEdgeManager/image-classification"] * 2


def test_settings_that_need_a_restart_are_kept_until_then() -> None:
    publisher = RecordingPublisher()
    new = build_config({"inference_interval": 0.0, "agent_socket": "/tmp/other.sock", "top_k": 2})
    app = make_app([1, 2], ScriptedPipeline(), publisher)
    app._updates = ScriptedUpdates({1: new})
    app.run()
    assert str(app.config.agent_socket) == "/tmp/aws.greengrass.SageMakerEdgeManager.sock"
    assert app.config.top_k == 2


def test_status_messages_report_waiting_for_the_agent_then_running_with_real_numbers() -> None:
    from component.status import StatusReporter

    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({3: [AgentUnavailableError("down")] * 3})
    app = make_app([1, 2, 3, 4], pipeline, publisher)
    app.status = StatusReporter(publisher, "edgeclassifier/status/t", 1e-9, app.metrics)
    app.run()
    statuses = [payload for topic, payload in publisher.messages if topic == "edgeclassifier/status/t"]
    states = [s["state"] for s in statuses]
    assert "WAITING_FOR_AGENT" in states and states[-1] == "RUNNING"
    assert states.index("WAITING_FOR_AGENT") < len(states) - 1
    last = statuses[-1]
    assert last["counters"]["classified"] == 4 and last["counters"]["agent_outages"] == 1
    assert last["latency-ms"]["total"] == {"p50": 10.0, "p90": 10.0, "p99": 10.0}
    assert last["model"] == {"name": "m", "version": "1.0.0", "sha256": "abc"}
    assert last["process"]["rss-mb"] > 10
    results = [payload["frame-id"] for topic, payload in publisher.messages if topic.startswith("gg/")]
    assert results == [1, 2, 3, 4]


def test_a_status_interval_of_zero_sends_no_status() -> None:
    from component.status import StatusReporter

    publisher = RecordingPublisher()
    app = make_app([1, 2], ScriptedPipeline(), publisher)
    app.status = StatusReporter(publisher, "edgeclassifier/status/t", 0.0, app.metrics)
    app.run()
    assert [topic for topic, _ in publisher.messages] == ["gg/sageMakerEdgeManager/image-classification"] * 2


def test_frames_go_to_the_model_in_batches_and_are_published_one_by_one_in_order() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline()
    app = make_app(list(range(1, 8)), pipeline, publisher, batch_size=3)
    app.run()
    assert pipeline.batches == [[1, 2, 3], [4, 5, 6], [7]]
    assert frame_ids(publisher) == [1, 2, 3, 4, 5, 6, 7]


def test_a_batch_never_reads_past_max_frames() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline()
    app = make_app(list(range(1, 10)), pipeline, publisher, batch_size=3, max_frames=5)
    app.run()
    assert pipeline.batches == [[1, 2, 3], [4, 5]]
    assert app.counters.frames == 5


def test_a_bad_frame_leaves_the_rest_of_its_batch_alone() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({2: [FrameError("cannot preprocess")]})
    app = make_app([1, 2, FrameError("truncated"), 4, 5, 6], pipeline, publisher, batch_size=3)
    app.run()
    assert pipeline.batches == [[1], [4, 5, 6]]
    assert frame_ids(publisher) == [1, 4, 5, 6]
    assert app.counters.bad_frames == 2


def test_an_agent_outage_holds_the_whole_batch() -> None:
    publisher = RecordingPublisher()
    pipeline = ScriptedPipeline({1: [AgentUnavailableError("down")] * 2})
    app = make_app([1, 2, 3, 4], pipeline, publisher, batch_size=2)
    app.run()
    assert pipeline.batches == [[1, 2], [1, 2], [1, 2], [3, 4]]
    assert frame_ids(publisher) == [1, 2, 3, 4]


def test_a_sustained_outage_is_reported_as_errored_and_recovery_as_running() -> None:
    publisher = RecordingPublisher()
    sender = RecordingStateSender()
    pipeline = ScriptedPipeline({2: [AgentUnavailableError("down")] * 5})
    app = make_app([1, 2, 3], pipeline, publisher, LifecycleReporter(sender, 0.002))
    app._backoff.first = app._backoff._next = 0.002
    app._backoff.cap = 0.002
    app.run()
    assert sender.states == ["ERRORED", "RUNNING"]
    assert frame_ids(publisher) == [1, 2, 3]


def test_a_short_outage_is_not_reported() -> None:
    sender = RecordingStateSender()
    pipeline = ScriptedPipeline({2: [AgentUnavailableError("down")] * 3})
    app = make_app([1, 2, 3], pipeline, RecordingPublisher(), LifecycleReporter(sender, 60.0))
    app.run()
    assert sender.states == []
