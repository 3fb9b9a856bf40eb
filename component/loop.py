"""The run loop: frames in batches -> the model on the agent -> results into the outbox, with the policies
for everything that goes wrong on the way.

- A frame that cannot be read or preprocessed: warned about, counted (bad_frames), skipped.
- Batches: up to BatchSize frames the source has ready (the first one waited for), classified together,
  each published as its own result, in frame order.
- The agent unreachable (AgentUnavailableError: down, restarting; ModelLoadingError: the model still loading):
  the batch is held and retried with capped backoff, forever; state WAITING_FOR_AGENT. An outage is never
  published as "nothing detected". A socket served by someone the client does not trust
  (AgentUntrustedError: another local user impersonating the agent) is held the same way, nothing is sent
  to it; state AGENT_UNTRUSTED.
- The agent alive but too slow (AgentTimeoutError): a batch is tried twice, then split in halves and each
  half tried again; a single frame that timed out twice is given up (failed_frames, agent_timeouts) so a
  slow agent never makes the loop resend the same work for ever; state AGENT_TOO_SLOW.
- The model failing (ModelOutputError: NaN/inf scores): counted (nonfinite_outputs), nothing published for
  those frames; state MODEL_FAILING. Any other refusal of the agent or the package: failed_frames.
- No frame from a live source within a second: state WAITING_FOR_SOURCE, asked again.
- Between frames (and while waiting) the host applies configuration updates and model swaps and the loop
  beats the watchdog (`host.between()`), so a long outage still takes updates and never looks wedged.
- Reading ahead (prefetch.py): while a batch is on the agent and the next frame is due at once
  (InferenceInterval 0, MaxFrames not reached), the next frame (with BatchSize 1: the next three) is read
  and prepared on a worker thread; the loop takes each as a batch's first frame and handles its outcome
  (counted, skipped, the source ended) as if it had read it then. The worker has finished before
  `host.between()` runs. A frame read ahead is held through an outage, prepared again after a model swap,
  and dropped only at stop. With BatchSize 1 the worker also sends each frame's Predict while the loop
  waits for another's, so up to three are on the agent at once; its answer is the frame's first attempt,
  under the policies above (a retry is a new call). Predicts are sent ahead only while answers come within
  SEND_AHEAD_SHARE of RpcTimeoutSeconds (three queued on an agent that runs one at a time must all fit
  it), never ahead of a frame held unsent, and not while a frame is tried again; one that times out or
  finds no agent is no attempt (the frame gets a call of its own), and a timeout recalls those sent ahead
  and pauses sending for SEND_PAUSE_FRAMES frames.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

from agent_client.errors import (
    AgentTimeoutError,
    AgentUnavailableError,
    AgentUntrustedError,
    EdgeError,
    FrameError,
    FrameTimeoutError,
    ModelLoadingError,
    ModelOutputError,
)

from .backoff import Backoff
from .config import ComponentConfig
from .frames import Classification, Frame
from .metrics import Metrics
from .outbox import ResultOutbox
from .pipeline import PreparedFrame, SentBatch
from .prefetch import MAX_AHEAD, Ahead, Prefetcher
from .results import ModelIdentity, to_payload
from .sources import FrameSource
from .swap import ActiveModel

logger = logging.getLogger(__name__)

WAKE_SECONDS = 0.2  # longest wait between looks at the stop flag and configuration updates
REMIND_SECONDS = 60.0  # how often a lasting outage is logged again
TIMEOUT_ATTEMPTS = 2
SEND_PAUSE_FRAMES = 100  # after a Predict timed out, this many frames go one at a time
# Predicts are sent ahead only while answers (each frame's predict time, queueing included) take at most this
# share of RpcTimeoutSeconds: several queued on an agent that runs one at a time (DLR) must all fit it.
SEND_AHEAD_SHARE = 0.25


class LoopHost(Protocol):
    """What the loop needs from the component that wires it."""

    config: ComponentConfig
    source: FrameSource
    active: ActiveModel
    outbox: ResultOutbox
    metrics: Metrics

    def between(self) -> None:
        """Applies configuration updates and model changes, beats the watchdog; called often."""
        ...

    def beat(self, allow: float) -> None:
        """Tells the watchdog the loop is about to make a call that may take up to `allow` seconds."""
        ...

    def describe_agent(self) -> str:
        """What is found at the agent's socket, in words a person can act on."""
        ...


@dataclass
class LoopCounters:
    frames: int = 0
    classified: int = 0
    bad_frames: int = 0
    failed_frames: int = 0
    agent_outages: int = 0
    agent_timeouts: int = 0
    nonfinite_outputs: int = 0


class RunLoop:
    def __init__(self, host: LoopHost, stop: threading.Event) -> None:
        self.host = host
        self.stop = stop
        self.counters = LoopCounters()
        self.state = "STARTING"
        self.ended = False
        self._backoff = Backoff()
        self._prefetch = Prefetcher()
        self._sent: SentBatch | None = None  # the Predict sent ahead for the batch being made
        self._send_pause = 0  # frames to classify before sending ahead again (after a late answer)
        self._agent_quick = False  # the last answer came well within the deadline (SEND_AHEAD_SHARE)

    def counts(self) -> Mapping[str, int]:
        return asdict(self.counters)

    def run(self) -> None:
        """Batches of frames until stopped, the source ends, or MaxFrames frames were handled."""
        try:
            self._run()
        finally:
            self._prefetch.close()
            if self._sent is not None:
                self._sent.cancel()

    def _run(self) -> None:
        started = -math.inf
        while not self._done():
            if not self._sleep_after(started):
                break
            started = time.monotonic()
            batch = self._next_batch()
            if not batch:
                continue
            for result, identity in self._classify(batch):
                config = self.host.config
                payload = to_payload(result, identity, config.top_k, config.score_threshold)
                self.host.outbox.put(config.topic, payload)

    def _done(self) -> bool:
        limit = self.host.config.max_frames
        return self.stop.is_set() or self.ended or bool(limit and self.counters.frames >= limit)

    def _sleep_after(self, started: float) -> bool:
        """Waits until the interval (as configured now) has passed since started; False when stopped.
        Updates are applied meanwhile, so a shorter interval takes effect at once."""
        while True:
            self._between()
            remaining = started + self.host.config.inference_interval - time.monotonic()
            if remaining <= 0:
                return not self._done()
            if self.stop.wait(min(remaining, WAKE_SECONDS)):
                return False

    def _between(self) -> None:
        """host.between(), once a read ahead has ended (never while the worker may use the source or the
        model); skipped when stopped first."""
        if self._prefetch.settle(self.stop, WAKE_SECONDS):
            self.host.between()

    # -- frames ---------------------------------------------------------------------------------------

    def _next_batch(self) -> list[PreparedFrame]:
        """Up to BatchSize prepared frames: the first waited for, the rest while the source has them ready."""
        batch: list[PreparedFrame] = []
        wanted = self.host.config.batch_size
        if self.host.config.max_frames:
            wanted = min(wanted, self.host.config.max_frames - self.counters.frames)
        pipeline = self.host.active.pipeline
        while len(batch) < wanted and not self.stop.is_set():
            if not self._prefetch.settle(self.stop, WAKE_SECONDS):
                break
            ahead = self._take_ahead()
            frame = self._next_frame(first=not batch, ahead=ahead)
            if frame is None:
                break
            try:
                prepared = ahead.prepare(pipeline, frame) if ahead else pipeline.prepare(frame)
            except FrameError as exc:
                if ahead is not None:
                    ahead.drop()
                self.counters.bad_frames += 1
                logger.warning("skipping frame %d (%s): %s", frame.frame_id, frame.source, exc)
                continue
            if ahead is not None:
                sent = ahead.sent_for(pipeline, prepared)
                if not batch:
                    self._sent = sent
                elif sent is not None:
                    sent.cancel()  # only a batch's first frame can have a Predict of its own
            batch.append(prepared)
        if self._sent is not None and len(batch) > 1:
            self._sent.cancel()  # sent for the first frame alone; the batch has more (BatchSize raised)
            self._sent = None
        return batch

    def _take_ahead(self) -> Ahead | None:
        """The oldest frame read ahead from the current source; those read from a source since replaced
        (a configuration update) are dropped, uncounted: the next frame comes from the new one."""
        ahead = self._prefetch.take()
        while ahead is not None and ahead.source is not self.host.source:
            logger.debug("dropping a frame read ahead from the source that was replaced")
            ahead.drop()
            ahead = self._prefetch.take()
        return ahead

    def _next_frame(self, first: bool, ahead: Ahead | None = None) -> Frame | None:
        """The next frame from the source, or the one read ahead; None when there is none now."""
        try:
            frame = ahead.read() if ahead else self.host.source.next_frame()
        except FrameTimeoutError as exc:
            logger.debug("%s", exc)  # a live source between frames or reconnecting
            if first:
                self.state = "WAITING_FOR_SOURCE"
            return None
        except FrameError as exc:
            self.counters.frames += 1
            self.counters.bad_frames += 1
            logger.warning("skipping a frame: %s", exc)
            return None
        if frame is None:
            logger.info("the source has no more frames")
            self.ended = True
            return None
        self.counters.frames += 1
        return frame

    # -- classification -------------------------------------------------------------------------------

    def _classify(self, batch: list[PreparedFrame]) -> list[tuple[Classification, ModelIdentity]]:
        """Classifies the batch under the policies of the module docstring; the frames that were classified
        come back, each with the identity of the model that did it."""
        sent, self._sent = self._sent, None  # the first frame's Predict sent ahead (_next_batch)
        first = batch[0].frame.frame_id
        outage: float | None = None
        reminded = 0.0
        timeouts = 0
        active = self.host.active
        failed = False  # an attempt for this batch failed: nothing is sent ahead while it is tried again
        while not self.stop.is_set():
            if self.host.active is not active:  # swapped while waiting: the new model's own tensors
                active = self.host.active
                batch = self._prepare_again(batch)
                if not batch:
                    return []
            try:
                self.host.beat(self.host.config.rpc_timeout * 2 + 1.0)  # a Predict, maybe reloading the model
                self._read_ahead(active, send=not failed)
                attempt, sent = sent, None  # a Predict sent ahead is the first try only
                try:
                    results = active.pipeline.infer(batch, attempt)
                except BaseException as exc:
                    self._prefetch.answered(False)  # before anything waits for the worker
                    failed = True
                    if attempt is None or not isinstance(exc, (AgentTimeoutError, AgentUnavailableError)):
                        raise
                    self._sent_ahead_failed(first, exc)
                    continue  # not an attempt: the frame gets a call of its own, under the policies
                self._prefetch.answered(True)
            except (AgentUnavailableError, ModelLoadingError, AgentUntrustedError) as exc:
                now = time.monotonic()
                self.state = (
                    "AGENT_UNTRUSTED" if isinstance(exc, AgentUntrustedError) else "WAITING_FOR_AGENT"
                )
                if outage is None:
                    outage, reminded = now, now
                    self.counters.agent_outages += 1
                    logger.warning(
                        "agent unreachable, holding %d frame(s) from %d: %s", len(batch), first, exc
                    )
                elif now - reminded >= REMIND_SECONDS:
                    reminded = now
                    logger.warning(
                        "still waiting for the agent after %.0f s (frames from %d held): %s",
                        now - outage,
                        first,
                        self.host.describe_agent(),
                    )
                self._pause(self._backoff.next())
                continue
            except AgentTimeoutError as exc:
                self.counters.agent_timeouts += 1
                self.state = "AGENT_TOO_SLOW"
                self._pause_sending(exc)
                timeouts += 1
                if timeouts < TIMEOUT_ATTEMPTS:
                    logger.warning(
                        "the agent is slow (%s); trying %d frame(s) from %d once more",
                        exc,
                        len(batch),
                        first,
                    )
                    continue
                if len(batch) > 1:
                    half = len(batch) // 2
                    logger.warning(
                        "the agent is too slow for %d frames at once; splitting the batch", len(batch)
                    )
                    return self._classify(batch[:half]) + self._classify(batch[half:])
                self.counters.failed_frames += 1
                logger.error("frame %d given up after %d timeouts: %s", first, timeouts, exc)
                return []
            except ModelOutputError as exc:
                self.counters.nonfinite_outputs += len(batch)
                self.state = "MODEL_FAILING"
                logger.error("%s", exc)
                return []
            except EdgeError as exc:  # the agent or the package refused: these frames only
                self.counters.failed_frames += len(batch)
                logger.error("the agent could not classify %d frame(s) from %d: %s", len(batch), first, exc)
                return []
            if outage is not None:
                logger.info("agent back after %.1f s", time.monotonic() - outage)
            self._backoff.reset()
            self.state = "RUNNING"
            self._send_pause = max(0, self._send_pause - len(results))
            slowest = max(result.latency.predict for result in results) / 1000
            self._agent_quick = slowest <= self.host.config.rpc_timeout * SEND_AHEAD_SHARE
            for result in results:
                self.counters.classified += 1
                self.host.metrics.frame_classified(result.latency)
            return [(result, active.identity) for result in results]
        if sent is not None:
            sent.cancel()  # stopped before it was taken
        return []

    def _sent_ahead_failed(self, first: int, exc: AgentTimeoutError | AgentUnavailableError) -> None:
        """A Predict sent ahead timed out or found no agent (it may have queued behind others past its
        deadline, or failed in an outage that has ended): not counted, the frame gets a call of its own. Any
        other answer (a refusal, non-finite scores) is the frame's own: it would be the same again."""
        logger.debug("frame %d: its Predict sent ahead failed (%s); it gets a call of its own", first, exc)
        if isinstance(exc, AgentTimeoutError):
            self._pause_sending(exc)

    def _pause_sending(self, exc: AgentTimeoutError) -> None:
        """The agent was too slow for a Predict: Predicts queued behind each other would only be slower, so
        those sent ahead are recalled and the next SEND_PAUSE_FRAMES frames go one at a time."""
        if self._send_pause == 0 and self.host.config.batch_size == 1:
            logger.info("the agent is slow (%s); sending ahead pauses for %d frames", exc, SEND_PAUSE_FRAMES)
        self._send_pause = SEND_PAUSE_FRAMES
        if self._prefetch.settle(self.stop, WAKE_SECONDS):  # a read ahead still running sends nothing more
            self._prefetch.recall()

    def _read_ahead(self, active: ActiveModel, send: bool = True) -> None:
        """Starts reading (and with BatchSize 1 sending) ahead while a batch is on the agent, when the frames
        after it are due as soon as it is classified: up to MAX_AHEAD frames held, so that with their
        Predicts sent ahead MAX_AHEAD are on the agent at once, the last one sent once the loop has the answer
        it waits for."""
        config = self.host.config
        prefetch = self._prefetch
        if config.inference_interval > 0 or prefetch.running or prefetch.source_paused or self.ended:
            return
        send = send and config.batch_size == 1 and not self._send_pause and self._agent_quick
        if send and prefetch.unsent_held():
            return  # the frames held unsent go first; none is sent ahead of them
        room = (MAX_AHEAD if send else 1) - prefetch.held
        if config.max_frames:
            room = min(room, config.max_frames - self.counters.frames - prefetch.held)
        if room >= 1:
            at_once = MAX_AHEAD - 1 - prefetch.sent_held()
            prefetch.start(self.host.source, active.pipeline, send, room, at_once)

    def _prepare_again(self, batch: list[PreparedFrame]) -> list[PreparedFrame]:
        prepared = []
        for item in batch:
            try:
                prepared.append(self.host.active.pipeline.prepare(item.frame))
            except FrameError as exc:
                self.counters.bad_frames += 1
                logger.warning("skipping frame %d (%s): %s", item.frame.frame_id, item.frame.source, exc)
        return prepared

    def _pause(self, seconds: float) -> None:
        """Waits, taking updates and beating the watchdog meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            self._between()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stop.wait(min(remaining, WAKE_SECONDS)):
                return
