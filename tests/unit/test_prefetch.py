"""Reading ahead (component/prefetch.py) inside the run loop: the next frame read and prepared on the worker
while a batch is on the agent, and every guarantee of the loop kept (no sockets)."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agent_client.errors import (
    AgentTimeoutError,
    AgentUnavailableError,
    FrameError,
    InvalidRequestError,
    ModelOutputError,
)
from component import loop as loop_module
from component import prefetch
from component.frames import Classification, Frame
from component.pipeline import PreparedFrame
from component.prefetch import MAX_AHEAD, Ahead, Prefetcher, read_ahead
from component.preprocess import Preprocessor, pending_decode
from component.results import ModelIdentity
from component.sources import open_source
from modelpkg.manifest import PreprocessSpec

from .test_loop import IMAGE, ListSource, RecordingPublisher, ScriptedPipeline, frame_ids, make_loop


class ThreadNotingPipeline(ScriptedPipeline):
    """Also notes which thread prepared each frame."""

    def __init__(self, errors: dict[int, list[Exception]] | None = None) -> None:
        super().__init__(errors)
        self.threads: dict[int, str] = {}

    def prepare(self, frame: Frame) -> PreparedFrame:
        self.threads[frame.frame_id] = threading.current_thread().name
        return super().prepare(frame)


def ahead_ids(pipeline: ThreadNotingPipeline) -> list[int]:
    return sorted(i for i, name in pipeline.threads.items() if name == "prefetch")


def no_prefetch_thread() -> bool:
    return not any(t.name == "prefetch" for t in threading.enumerate())


def test_the_next_frame_is_prepared_while_the_batch_is_on_the_agent_and_order_and_ids_are_kept() -> None:
    publisher = RecordingPublisher()
    pipeline = ThreadNotingPipeline()
    loop, _ = make_loop(list(range(1, 7)), pipeline, publisher)
    loop.run()
    assert frame_ids(publisher) == [1, 2, 3, 4, 5, 6]
    assert pipeline.calls == [1, 2, 3, 4, 5, 6] and pipeline.prepared == [1, 2, 3, 4, 5, 6]
    assert ahead_ids(pipeline) == [2, 3, 4, 5, 6]  # the first is read before any Predict
    assert loop.counters.frames == 6 and loop.ended
    assert no_prefetch_thread()


def test_a_bad_frame_read_or_prepared_ahead_is_skipped_and_counted_as_before() -> None:
    publisher = RecordingPublisher()
    pipeline = ThreadNotingPipeline({4: [FrameError("cannot preprocess")]})
    loop, _ = make_loop([1, FrameError("truncated"), 3, 4, 5], pipeline, publisher)
    loop.run()
    assert frame_ids(publisher) == [1, 3, 5]
    assert loop.counters.bad_frames == 2 and loop.counters.frames == 5
    assert pipeline.threads[4] == "prefetch"


def test_a_frame_read_ahead_during_an_outage_is_held_and_used_next_read_once() -> None:
    publisher = RecordingPublisher()
    pipeline = ThreadNotingPipeline({1: [AgentUnavailableError("down")] * 3})
    loop, _ = make_loop([1, 2, 3], pipeline, publisher)
    loop.run()
    assert pipeline.batches == [[1], [1], [1], [1], [2], [3]]
    assert pipeline.prepared == [1, 2, 3]  # frame 2 read and prepared once, during the first attempt
    assert frame_ids(publisher) == [1, 2, 3] and loop.counters.frames == 3


def test_a_model_swap_prepares_the_frame_read_ahead_again_with_the_new_model() -> None:
    old = ThreadNotingPipeline({1: [AgentUnavailableError("down")] * 1000})
    new = ThreadNotingPipeline()
    publisher = RecordingPublisher()
    loop, host = make_loop([1, 2, 3], old, publisher)
    host.on_between[5] = lambda h: setattr(
        h, "active", SimpleNamespace(pipeline=new, identity=ModelIdentity("n", "2", "def"))
    )
    loop.run()
    assert old.prepared == [1, 2]  # 2 read ahead for the old model while 1 was held (nothing sent ahead)
    assert new.prepared == [1, 2, 3] and new.calls == [1, 2, 3]
    assert new.threads[2] == "MainThread" and new.threads[3] == "prefetch"
    assert [payload["model"]["name"] for _, payload in publisher.messages] == ["n", "n", "n"]


def test_updates_are_never_applied_while_a_frame_is_read_ahead() -> None:
    reading = threading.Event()
    overlaps: list[int] = []

    class SlowSource(ListSource):
        def next_frame(self) -> Frame | None:
            reading.set()
            time.sleep(0.002)
            try:
                return super().next_frame()
            finally:
                reading.clear()

    loop, host = make_loop([], ThreadNotingPipeline(), RecordingPublisher())
    host.source = SlowSource(list(range(1, 30)))
    between = host.between

    def checked() -> None:
        if reading.is_set():
            overlaps.append(host.betweens)
        between()

    host.between = checked  # type: ignore[method-assign]
    loop.run()
    assert overlaps == [] and loop.counters.frames == 29


def test_max_frames_never_reads_a_frame_beyond_it() -> None:
    publisher = RecordingPublisher()
    pipeline = ThreadNotingPipeline()
    loop, host = make_loop(list(range(1, 10)), pipeline, publisher, max_frames=4)
    loop.run()
    assert frame_ids(publisher) == [1, 2, 3, 4]
    assert pipeline.prepared == [1, 2, 3, 4] and len(host.source.items) == 5


def test_with_an_inference_interval_nothing_is_read_ahead() -> None:
    pipeline = ThreadNotingPipeline()
    loop, _ = make_loop([1, 2, 3], pipeline, RecordingPublisher(), inference_interval=0.01)
    loop.run()
    assert set(pipeline.threads.values()) == {"MainThread"} and pipeline.calls == [1, 2, 3]


def test_stop_during_a_read_ahead_ends_the_loop_and_joins_the_worker_within_its_bound() -> None:
    release = threading.Event()

    class BlockingSource(ListSource):
        def next_frame(self) -> Frame | None:
            if self.items and self.items[0] == 2:
                release.wait(0.5)  # a live source waiting for its next frame
            return super().next_frame()

    publisher = RecordingPublisher()
    loop, host = make_loop([], ThreadNotingPipeline(), publisher)
    host.source = BlockingSource([1, 2, 3])
    timer = threading.Timer(0.05, loop.stop.set)
    timer.start()
    started = time.monotonic()
    loop.run()
    timer.join()
    assert time.monotonic() - started < 1.5
    assert frame_ids(publisher) == [1]  # frame 2, still being read at stop, is dropped
    assert no_prefetch_thread()


def test_an_unexpected_error_in_a_read_ahead_is_raised_by_the_loop_where_the_read_was() -> None:
    source = ListSource([RuntimeError("bug")])
    ahead = read_ahead(source, ScriptedPipeline())
    assert isinstance(ahead.read_error, RuntimeError)
    with pytest.raises(RuntimeError, match="bug"):
        ahead.read()


def test_ahead_prepares_again_for_another_pipeline_only() -> None:
    old, new = ScriptedPipeline(), ScriptedPipeline()
    frame = Frame(frame_id=7, timestamp=1.0, source="x", image=IMAGE)
    ahead = Ahead(frame, old, prepared=old.prepare(frame))
    assert ahead.prepare(old, frame) is ahead.prepared
    assert ahead.prepare(new, frame).frame is frame and new.prepared == [7]


class PixelPipeline:
    """prepare() with real preprocessing (the bundled packages' spec); nothing is sent."""

    def __init__(self) -> None:
        spec = PreprocessSpec(256, (224, 224), "bilinear", (0, 0, 0), (1, 1, 1), "NHWC", "RGB", "uint8", True)
        self.preprocessor = Preprocessor(spec, (1, 224, 224, 3))

    def prepare(self, frame: Frame) -> PreparedFrame:
        return PreparedFrame(frame, self.preprocessor(frame.image), 1.0)

    def send(self, batch: Any) -> None:
        return None


def test_a_file_frame_read_ahead_holds_its_bytes_not_its_decoded_pixels(tmp_path: Path) -> None:
    """Three frames ahead used to hold three decoded images (2.4 MB more resident with the samples)."""
    Image.effect_mandelbrot((320, 240), (-2, -1.2, 1, 1.2), 64).convert("RGB").save(tmp_path / "a.jpg")
    old, new = PixelPipeline(), PixelPipeline()
    ahead = read_ahead(open_source(str(tmp_path / "a.jpg"), loop=False), old)
    assert ahead.frame is not None and ahead.prepared is not None
    assert ahead.frame.encoded == (tmp_path / "a.jpg").read_bytes()
    assert pending_decode(ahead.frame.image)  # held undecoded
    assert ahead.prepared.frame is ahead.frame  # the frame the loop takes is the one held
    assert ahead.prepare(old, ahead.frame) is ahead.prepared
    # after a model swap it is prepared again from its bytes: the very same tensor
    again = ahead.prepare(new, ahead.frame)
    np.testing.assert_array_equal(again.tensor, ahead.prepared.tensor)
    assert again.tensor.shape == (1, 224, 224, 3) and again.tensor.any()


def test_the_prefetcher_holds_at_most_max_ahead_frames_and_one_read_at_a_time() -> None:
    prefetcher = Prefetcher()
    source, pipeline = ListSource(list(range(1, 10))), ScriptedPipeline()
    try:
        prefetcher.start(source, pipeline)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="settle it first"):
            prefetcher.start(source, pipeline)  # type: ignore[arg-type]
        assert prefetcher.settle(threading.Event()) and prefetcher.held == 1
        with pytest.raises(RuntimeError, match=f"at most {MAX_AHEAD} frames"):
            prefetcher.start(source, pipeline, frames=MAX_AHEAD)  # type: ignore[arg-type]
        prefetcher.start(source, pipeline, frames=MAX_AHEAD - 1)  # type: ignore[arg-type]
        assert prefetcher.settle(threading.Event()) and prefetcher.held == MAX_AHEAD
        taken = [prefetcher.take() for _ in range(MAX_AHEAD)]
        assert [a.frame.frame_id for a in taken if a and a.frame] == list(range(1, MAX_AHEAD + 1))
        assert prefetcher.take() is None and not prefetcher.holding
    finally:
        prefetcher.close()
    assert no_prefetch_thread()


class FakeSent:
    """What FramePipeline.send returns, as far as the loop looks at it."""

    def __init__(self, pipeline: SendingPipeline, batch: list[PreparedFrame]) -> None:
        self.pipeline = pipeline
        self.batch = tuple(batch)
        self.started = 0.0
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SendingPipeline(ThreadNotingPipeline):
    """A pipeline that sends ahead: `sent` by frame id, `answered` the frames whose sent Predict infer() took
    (its scripted error, if any, being that Predict's answer), `sent_on` the thread that sent each."""

    def __init__(self, errors: dict[int, list[Exception]] | None = None) -> None:
        super().__init__(errors)
        self.sent: dict[int, FakeSent] = {}
        self.sent_on: dict[int, str] = {}
        self.answered: list[int] = []
        self.on_infer: dict[int, Any] = {}

    def send(self, batch: list[PreparedFrame]) -> FakeSent:  # type: ignore[override]
        first = batch[0].frame.frame_id
        self.sent[first] = FakeSent(self, batch)
        self.sent_on[first] = threading.current_thread().name
        return self.sent[first]

    def infer(self, batch: list[PreparedFrame], sent: Any = None) -> list[Classification]:
        if sent is not None:
            assert not sent.cancelled and sent.pipeline is self
            assert all(a is b for a, b in zip(sent.batch, batch, strict=True))
            self.answered.append(batch[0].frame.frame_id)
        action = self.on_infer.get(batch[0].frame.frame_id)
        if action is not None:
            action()
        return super().infer(batch)


def test_with_batch_size_1_the_frame_read_ahead_is_also_sent_and_its_answer_taken() -> None:
    publisher = RecordingPublisher()
    pipeline = SendingPipeline()
    loop, _ = make_loop(list(range(1, 7)), pipeline, publisher)
    loop._agent_quick = True  # an agent seen answering well within its deadline
    loop.run()
    assert frame_ids(publisher) == [1, 2, 3, 4, 5, 6]
    assert pipeline.answered == [2, 3, 4, 5, 6] and pipeline.calls == [1, 2, 3, 4, 5, 6]
    assert set(pipeline.sent_on.values()) == {"prefetch"}
    assert not any(sent.cancelled for sent in pipeline.sent.values())


def test_a_predict_sent_ahead_that_fails_is_held_and_retried_as_a_new_call() -> None:
    publisher = RecordingPublisher()
    pipeline = SendingPipeline({2: [AgentUnavailableError("down")] * 2})
    loop, _ = make_loop([1, 2, 3], pipeline, publisher)
    loop._agent_quick = True  # an agent seen answering well within its deadline
    loop.run()
    assert pipeline.calls == [1, 2, 2, 2, 3]  # the sent one's answer, then two new calls
    assert pipeline.answered.count(2) == 1
    assert frame_ids(publisher) == [1, 2, 3] and loop.counters.agent_outages == 1


def test_a_model_swap_cancels_a_predict_sent_with_the_old_model_and_classifies_the_frame_anew() -> None:
    old, new = SendingPipeline(), SendingPipeline()
    publisher = RecordingPublisher()
    loop, host = make_loop(list(range(1, 7)), old, publisher)
    loop._agent_quick = True  # an agent seen answering well within its deadline
    host.on_between[2] = lambda h: setattr(  # after frame 1, while the next ones are on the agent for the old
        h, "active", SimpleNamespace(pipeline=new, identity=ModelIdentity("n", "2", "def"))
    )
    loop.run()
    assert sorted(old.sent) == list(range(2, 2 + MAX_AHEAD))
    assert all(sent.cancelled for sent in old.sent.values()) and old.answered == [] and old.calls == [1]
    assert new.calls == [2, 3, 4, 5, 6] and not set(old.sent) & set(new.answered)
    assert [payload["model"]["name"] for _, payload in publisher.messages] == ["m"] + ["n"] * 5
    assert frame_ids(publisher) == [1, 2, 3, 4, 5, 6]


def test_with_a_batch_size_above_1_nothing_is_sent_ahead() -> None:
    publisher = RecordingPublisher()
    pipeline = SendingPipeline()
    loop, _ = make_loop(list(range(1, 7)), pipeline, publisher, batch_size=2)
    loop.run()
    assert pipeline.sent == {} and frame_ids(publisher) == [1, 2, 3, 4, 5, 6]


def test_stop_cancels_a_predict_sent_ahead_and_not_taken() -> None:
    publisher = RecordingPublisher()
    pipeline = SendingPipeline()
    loop, _ = make_loop([1, 2, 3], pipeline, publisher)
    loop._agent_quick = True  # an agent seen answering well within its deadline

    def stop_once_2_is_sent() -> None:
        deadline = time.monotonic() + 2.0
        while 2 not in pipeline.sent and time.monotonic() < deadline:
            time.sleep(0.001)
        loop.stop.set()

    pipeline.on_infer[1] = stop_once_2_is_sent
    loop.run()
    assert pipeline.sent[2].cancelled and 2 not in pipeline.answered
    assert no_prefetch_thread()


def test_a_frame_that_must_wait_for_an_answer_is_sent_only_once_the_loop_has_one() -> None:
    prefetcher = Prefetcher()
    pipeline = SendingPipeline()
    try:
        prefetcher.start(ListSource([1, 2]), pipeline, send=True, frames=2, at_once=1)  # type: ignore[arg-type]
        deadline = time.monotonic() + 2.0
        while len(pipeline.prepared) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)
        assert list(pipeline.sent) == [1] and prefetcher.running  # 2 prepared, waiting for an answer
        prefetcher.answered()
        assert prefetcher.settle(threading.Event()) and list(pipeline.sent) == [1, 2]
    finally:
        prefetcher.close()
    assert no_prefetch_thread()


def test_closing_while_a_frame_waits_to_be_sent_sends_nothing_and_ends_the_worker() -> None:
    prefetcher = Prefetcher()
    pipeline = SendingPipeline()
    prefetcher.start(ListSource([1, 2]), pipeline, send=True, frames=2, at_once=1)  # type: ignore[arg-type]
    deadline = time.monotonic() + 2.0
    while len(pipeline.prepared) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    started = time.monotonic()
    prefetcher.close()
    assert time.monotonic() - started < 1.0
    assert list(pipeline.sent) == [1] and pipeline.sent[1].cancelled
    assert no_prefetch_thread()


def test_stop_right_after_a_batch_is_made_cancels_the_predict_sent_for_it() -> None:
    pipeline = SendingPipeline()
    loop, _ = make_loop([1, 2, 3, 4], pipeline, RecordingPublisher())
    loop._agent_quick = True  # an agent seen answering well within its deadline
    next_batch = loop._next_batch

    def then_stop() -> list[PreparedFrame]:
        batch = next_batch()
        if batch and batch[0].frame.frame_id == 2:
            loop.stop.set()  # SIGTERM while frame 2's batch is made
        return batch

    loop._next_batch = then_stop  # type: ignore[method-assign]
    loop.run()
    assert 2 in pipeline.sent and 2 not in pipeline.answered
    unanswered = [i for i in pipeline.sent if i not in pipeline.answered]
    assert unanswered and all(pipeline.sent[i].cancelled for i in unanswered)


def test_batch_size_raised_while_sent_frames_are_held_cancels_what_it_no_longer_takes() -> None:
    pipeline = SendingPipeline()
    publisher = RecordingPublisher()
    loop, host = make_loop(list(range(1, 11)), pipeline, publisher)
    loop._agent_quick = True  # an agent seen answering well within its deadline
    host.on_between[3] = lambda h: setattr(h, "config", h.config.replace(batch_size=4))
    loop.run()
    assert frame_ids(publisher) == list(range(1, 11))
    leaked = [i for i, s in pipeline.sent.items() if i not in pipeline.answered and not s.cancelled]
    assert leaked == []


def test_a_frame_waiting_to_be_sent_is_not_sent_past_the_wait_bound() -> None:
    pipeline = SendingPipeline()
    loop, _ = make_loop([1, 2, 3, 4, 5], pipeline, RecordingPublisher())
    loop._agent_quick = True  # an agent seen answering well within its deadline
    seen: list[list[int]] = []

    def slow_first_answer() -> None:  # frame 1's answer takes longer than the worker may wait
        time.sleep(0.3)
        seen.append(sorted(pipeline.sent))

    pipeline.on_infer[1] = slow_first_answer
    saved = prefetch.SEND_WAIT_SECONDS
    prefetch.SEND_WAIT_SECONDS = 0.05
    try:
        loop.run()
    finally:
        prefetch.SEND_WAIT_SECONDS = saved
    assert seen == [list(range(2, 1 + MAX_AHEAD))]  # those sent at once; none past the bound


def test_after_a_failed_attempt_nothing_more_is_sent_while_the_frame_is_tried_again() -> None:
    pipeline = SendingPipeline({1: [AgentTimeoutError("slow")]})
    publisher = RecordingPublisher()
    loop, _ = make_loop([1, 2, 3, 4, 5], pipeline, publisher)
    loop._agent_quick = True  # an agent seen answering well within its deadline
    at_retry: list[list[int]] = []
    attempts = 0

    def note() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 2:  # frame 1 tried again: give the worker time to send what it would
            time.sleep(0.1)
            at_retry.append(sorted(pipeline.sent))

    pipeline.on_infer[1] = note
    loop.run()
    assert len(at_retry) == 1 and all(i <= MAX_AHEAD for i in at_retry[0])  # none once it failed
    assert frame_ids(publisher) == [1, 2, 3, 4, 5]


def test_a_predict_sent_ahead_that_failed_is_no_attempt_and_no_outage() -> None:
    """Sent ahead, its answer an error (the agent was down for a moment, or it queued past its deadline):
    not counted; the frame gets a call of its own at once, no outage or timeout counted or waited out."""
    pipeline = SendingPipeline({2: [AgentUnavailableError("down")], 3: [AgentTimeoutError("late")]})
    publisher = RecordingPublisher()
    loop, _ = make_loop([1, 2, 3, 4], pipeline, publisher)
    loop._agent_quick = True  # an agent seen answering well within its deadline
    loop.run()
    assert frame_ids(publisher) == [1, 2, 3, 4]
    assert pipeline.answered[:2] == [2, 3] and pipeline.calls == [1, 2, 2, 3, 3, 4]  # sent, then its own
    assert loop.counters.agent_outages == 0 and loop.counters.agent_timeouts == 0
    assert loop._send_pause > 0  # a late answer pauses sending ahead


class SerialAgent:
    """An agent that runs one Predict at a time (DLR's lock, `--workers 1`), `run_s` each; a call whose
    deadline passed while it queued is skipped, as agent/limits.py does; the caller gets AgentTimeoutError
    at its deadline, counted from its send (as SentCall's); a cancelled one not yet run is skipped (as the
    agent skips a call whose caller has gone). A stand-in for timing only."""

    def __init__(self, run_s: float) -> None:
        self.run_s = run_s
        self._lock = threading.Lock()

    def submit(self, timeout: float, sent: FakeSent | None = None) -> tuple[threading.Event, float]:
        done, deadline = threading.Event(), time.monotonic() + timeout

        def work() -> None:
            with self._lock:
                if time.monotonic() < deadline and not (sent and sent.cancelled):  # skipped, as the agent
                    time.sleep(self.run_s)
                    done.set()

        threading.Thread(target=work, daemon=True).start()
        return done, deadline

    @staticmethod
    def wait(call: tuple[threading.Event, float]) -> None:
        done, deadline = call
        if not done.wait(max(deadline - time.monotonic(), 0)):
            raise AgentTimeoutError("DEADLINE_EXCEEDED")


class SerialAgentPipeline(SendingPipeline):
    def __init__(self, agent: SerialAgent, timeout: float) -> None:
        super().__init__()
        self.agent, self.timeout = agent, timeout

    def send(self, batch: list[PreparedFrame]) -> FakeSent:  # type: ignore[override]
        sent = super().send(batch)
        sent.started = time.perf_counter()
        sent.call = self.agent.submit(self.timeout, sent)  # type: ignore[attr-defined]
        return sent

    def infer(self, batch: list[PreparedFrame], sent: Any = None) -> list[Classification]:
        started = sent.started if sent is not None else time.perf_counter()
        self.agent.wait(sent.call if sent is not None else self.agent.submit(self.timeout))
        predict_ms = (time.perf_counter() - started) * 1000  # from the send, as FramePipeline measures it
        return [
            dataclasses.replace(r, latency=dataclasses.replace(r.latency, predict=predict_ms))
            for r in super().infer(batch, sent)
        ]


def test_an_agent_too_slow_for_predicts_queued_behind_each_other_gets_none_sent_ahead() -> None:
    """Each run takes 60% of the deadline: three queued would not fit it. Nothing is sent ahead before an
    answer has come within SEND_AHEAD_SHARE of the deadline, so every frame goes one at a time: all
    published, no timeout (before: Predicts sent ahead timed out and about half the frames were given up)."""
    pipeline = SerialAgentPipeline(SerialAgent(run_s=0.3), timeout=0.5)
    publisher = RecordingPublisher()
    loop, _ = make_loop(list(range(1, 8)), pipeline, publisher, rpc_timeout=0.5)
    loop.run()
    assert frame_ids(publisher) == list(range(1, 8)) and pipeline.sent == {}
    assert loop.counters.failed_frames == 0 and loop.counters.agent_timeouts == 0


def test_frames_read_ahead_from_a_replaced_source_are_dropped_and_its_end_does_not_stop_the_loop() -> None:
    pipeline = SendingPipeline()
    publisher = RecordingPublisher()
    loop, host = make_loop([1, 2], pipeline, publisher)  # the old source ends after frame 2
    loop._agent_quick = True  # an agent seen answering well within its deadline
    host.on_between[2] = lambda h: setattr(h, "source", ListSource([11, 12, 13]))  # after frame 1
    loop.run()
    assert frame_ids(publisher) == [1, 11, 12, 13]
    assert pipeline.sent[2].cancelled and 2 not in pipeline.calls


@pytest.mark.parametrize("run_over_deadline", [0.8, 0.9])
def test_a_one_at_a_time_agent_loses_nothing_when_the_send_pause_ends(
    monkeypatch: pytest.MonkeyPatch, run_over_deadline: float
) -> None:
    """Every run fits the deadline alone (one Predict at a time would have no timeout at all), not three
    queued. Predicts are sent ahead only while answers come within SEND_AHEAD_SHARE of the deadline, a
    timeout recalls them and pauses sending (4 frames here, 100 in production), and a frame held unsent goes
    before any sent after it: nothing is given up, also when the pause ends (before: 5 and 11 of 24)."""
    monkeypatch.setattr(loop_module, "SEND_PAUSE_FRAMES", 4)
    timeout = 0.25
    pipeline = SerialAgentPipeline(SerialAgent(run_s=timeout * run_over_deadline), timeout=timeout)
    publisher = RecordingPublisher()
    loop, _ = make_loop(list(range(1, 25)), pipeline, publisher, rpc_timeout=timeout)
    loop.run()
    assert loop.counters.failed_frames == 0, (loop.counters.agent_timeouts, loop.counters.failed_frames)
    assert frame_ids(publisher) == list(range(1, 25))


class CountingSendingPipeline(SendingPipeline):
    """Every Predict (sent ahead or the loop's own) of `bad` frames answers with `error`."""

    def __init__(self, bad: set[int], error: type[Exception]) -> None:
        super().__init__()
        self.bad, self.error = bad, error
        self.agent_runs: list[int] = []

    def infer(self, batch: list[PreparedFrame], sent: Any = None) -> list[Classification]:
        first = batch[0].frame.frame_id
        self.agent_runs.append(first)
        if first in self.bad:
            super().infer(batch, sent)  # note it
            raise self.error("deterministic")
        return super().infer(batch, sent)


@pytest.mark.parametrize("error", [ModelOutputError, InvalidRequestError])
def test_a_deterministic_refusal_of_a_predict_sent_ahead_is_not_asked_again(error: type[Exception]) -> None:
    """A NaN model (ModelOutputError) or a refused request answers the same every time: the answer of the
    Predict sent ahead is the frame's answer, not asked again (before: two runs for each such frame)."""
    bad = set(range(2, 11))
    pipeline = CountingSendingPipeline(bad, error)
    loop, _ = make_loop(list(range(1, 11)), pipeline, RecordingPublisher())
    loop._agent_quick = True  # an agent seen answering well within its deadline
    loop.run()
    assert pipeline.agent_runs == list(range(1, 11)), pipeline.agent_runs


def test_recall_cancels_a_predict_sent_by_the_job_still_running() -> None:
    """Frame 1's own call times out while the worker's job (frames 2, 3 sent at once, 4 waiting for an
    answer) is still running: the job is settled first, so 2 and 3 are recalled too, not left on an agent
    just found too slow."""
    pipeline = SendingPipeline()
    loop, _ = make_loop([1, 2, 3, 4, 5], pipeline, RecordingPublisher())
    loop._agent_quick = True  # an agent seen answering well within its deadline
    attempts = 0

    def slow_then_timeout() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            time.sleep(0.2)  # the worker reads and sends 2 and 3 meanwhile, then waits for an answer for 4
            raise AgentTimeoutError("late")

    pipeline.on_infer[1] = slow_then_timeout
    loop.run()
    assert 2 in pipeline.sent and 3 in pipeline.sent
    assert pipeline.sent[2].cancelled and pipeline.sent[3].cancelled, "recall() missed them"
    assert pipeline.answered == []
