"""Reading ahead: the next frames read and preprocessed on a worker thread while a batch is on the agent.

A Predict is a wait on the agent's socket (the GIL released), so the frames after the batch can be read
and prepared meanwhile instead of after the reply. The run loop (loop.py) holds the policies; this stage
only moves the calls it would make next, `source.next_frame()` and `pipeline.prepare(frame)` (and, when
sending ahead, `pipeline.send([prepared])`), onto the worker, and hands back what they returned or raised
for the loop to handle in their place:

- At most MAX_AHEAD (3) frames held, and only one read at a time: `start()` is refused while a read runs
  or when it would hold more. A read stops at the first outcome that is not a prepared frame (the source
  ended or failed, a bad frame); nothing more is read until the loop has taken it (`source_paused`).
- The loop starts a read only while a Predict is in flight and only when the next frames are due at once
  (InferenceInterval 0, MaxFrames not reached); it settles (waits for the read to end) before it applies
  updates (`host.between()`) or reads the source itself, so the worker never runs beside a source or
  model swap and the source is only ever read by one thread.
- What was read ahead is taken next, oldest first; nothing is counted here (the loop counts when it
  takes). The frames are kept through an outage; a tensor prepared by a pipeline that is no longer the
  active one is prepared again by the new one (`Ahead.prepared_by`). They are dropped only at stop. A
  frame held keeps the bytes it was read as, not the pixels its preprocessing decoded (`Frame.undecoded`).
- `close()` ends the worker, joined within a bound (a read blocks at most a live source's wait).
- Sending ahead (`send=True`, which the loop asks for with BatchSize 1): once a frame is prepared, its
  Predict is sent too, without waiting for the answer, so that the agent always has the next frame's
  requests while the loop waits for the current one's: up to MAX_AHEAD Predicts on the agent, whose runs
  fill each other's gaps (measured: two or three ONNX Runtime runs at once finish sooner than one after
  the other). A frame is sent at once while fewer than MAX_AHEAD are out (`at_once`); otherwise the
  worker waits until the loop has had the answer it waits for (`answered()`), never longer than
  SEND_WAIT_SECONDS. The loop takes the answer as its first attempt for that frame, under all its
  policies (`Ahead.sent_for`); a Predict sent by a pipeline that is no longer the active one, or for a
  frame prepared again, is cancelled and the frame classified anew; one not taken at stop is cancelled.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from .frames import Frame
from .pipeline import PreparedFrame, SentBatch
from .sources import FrameSource

logger = logging.getLogger(__name__)

JOIN_SECONDS = 2.0  # longest wait for the worker at close; a live source's read gives up after 1 s
SEND_WAIT_SECONDS = 10.0
MAX_AHEAD = 3  # frames read ahead at most; with BatchSize 1 also the most Predicts on the agent at once


class Preparer(Protocol):
    def prepare(self, frame: Frame) -> PreparedFrame: ...

    def send(self, batch: Sequence[PreparedFrame]) -> SentBatch | None: ...


@dataclass(frozen=True)
class Ahead:
    """The outcome of reading one frame ahead, in the terms of the two calls it replaces:

    - `read_error`: what `source.next_frame()` raised (a FrameError, a FrameTimeoutError from a live
      source, or anything else, re-raised by the loop in its place); otherwise `frame` (None: the source
      has ended);
    - `prepared` or `prepare_error` (what `prepared_by.prepare(frame)` returned or raised) for a frame;
    - `sent`: the prepared frame's Predict, already sent (`prepared_by.send([prepared])`), when asked."""

    frame: Frame | None
    prepared_by: Preparer
    source: FrameSource | None = None  # read from
    read_error: Exception | None = None
    prepared: PreparedFrame | None = None
    prepare_error: Exception | None = None
    sent: SentBatch | None = None

    def read(self) -> Frame | None:
        """The frame, as `source.next_frame()` would have returned it, or its exception raised."""
        if self.read_error is not None:
            raise self.read_error
        return self.frame

    def prepare(self, pipeline: Preparer, frame: Frame) -> PreparedFrame:
        """The frame's tensor, as `pipeline.prepare(frame)` would return it; prepared again when the
        pipeline is not the one that prepared it (the model was swapped meanwhile)."""
        if pipeline is not self.prepared_by or frame is not self.frame:
            return pipeline.prepare(frame)
        if self.prepare_error is not None:
            raise self.prepare_error
        assert self.prepared is not None
        return self.prepared

    def sent_for(self, pipeline: Preparer, prepared: PreparedFrame) -> SentBatch | None:
        """The Predict sent for `prepared`, if it was sent by `pipeline`; one sent by a pipeline that is no
        longer the active one (or for a tensor prepared again) is cancelled, and None returned."""
        if self.sent is None:
            return None
        if pipeline is self.prepared_by and prepared is self.prepared:
            return self.sent
        self.sent.cancel()
        return None

    def drop(self) -> None:
        """Cancels the Predict sent ahead, if any (the frame is not taken, or gets a call of its own)."""
        if self.sent is not None:
            self.sent.cancel()


def read_ahead(source: FrameSource, pipeline: Preparer) -> Ahead:
    """Reads and prepares the next frame, every outcome kept for the loop to handle (nothing swallowed:
    an unexpected exception is re-raised by the loop where the call would have raised it)."""
    try:
        frame = source.next_frame()
    except Exception as exc:  # handed back to the loop, re-raised there (Ahead.read)
        return Ahead(None, pipeline, source, read_error=exc)
    if frame is None:
        return Ahead(None, pipeline, source)
    try:
        prepared = pipeline.prepare(frame)
    except Exception as exc:  # handed back to the loop, re-raised there (Ahead.prepare)
        # held as read (a model swap prepares it again from its bytes, failing for the same reason)
        return Ahead(frame.undecoded(), pipeline, source, prepare_error=exc)
    kept = frame.undecoded()  # held until taken: its bytes, not its decoded pixels
    return Ahead(kept, pipeline, source, prepared=replace(prepared, frame=kept))


def send_ahead(ahead: Ahead) -> Ahead:
    """The Ahead with its prepared frame's Predict sent (a batch of that one frame); as it was when there is
    nothing to send or sending fails (the loop then makes the call itself, which raises what is wrong)."""
    if ahead.prepared is None:
        return ahead
    try:
        return replace(ahead, sent=ahead.prepared_by.send([ahead.prepared]))
    except Exception:
        logger.debug("frame %d could not be sent ahead", ahead.prepared.frame.frame_id, exc_info=True)
        return ahead


@dataclass(frozen=True)
class _Job:
    source: FrameSource
    pipeline: Preparer
    frames: int  # how many frames to read, in order (fewer if the source ends or fails first)
    send: bool
    at_once: int  # how many of them may be sent as soon as prepared; each further one waits for an answer
    answers: int  # the loop's answer count when the job started
    failures: int  # and its count of failed attempts


class Prefetcher:
    """One worker thread, up to MAX_AHEAD frames ahead. Driven by one thread (the run loop's)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._finished = threading.Event()
        self._results: list[Ahead] = []
        self._running = False
        self._held: deque[Ahead] = deque()
        self._thread: threading.Thread | None = None
        self._answers = 0  # answers the loop has had to its Predicts (see answered())
        self._failures = 0  # attempts of the loop that failed
        self._closing = False
        self._changed = threading.Condition()

    @property
    def holding(self) -> bool:
        """A read is running or its outcome waits to be taken."""
        return self._running or bool(self._held)

    @property
    def held(self) -> int:
        """Frames read ahead and not taken yet (settled first)."""
        return len(self._held)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def source_paused(self) -> bool:
        """The newest frame held is no prepared frame (the source ended or failed, or a bad frame): nothing
        more is read ahead until the loop has taken it."""
        return bool(self._held) and self._held[-1].prepared is None

    def unsent_held(self) -> int:
        """Prepared frames held whose Predict was not sent."""
        return sum(1 for ahead in self._held if ahead.sent is None and ahead.prepared is not None)

    def sent_held(self) -> int:
        """Frames read ahead and not taken yet whose Predict was sent."""
        return sum(1 for ahead in self._held if ahead.sent is not None)

    def start(
        self, source: FrameSource, pipeline: Preparer, send: bool = False, frames: int = 1, at_once: int = 1
    ) -> None:
        """Begins reading and preparing the next `frames` frames of source with pipeline on the worker; with
        `send`, also sends each one's Predict: the first `at_once` as soon as they are prepared, each further
        one once the loop has had one more answer (`answered()`) than when this job started."""
        if self._running:
            raise RuntimeError("a read ahead is running; settle it first")
        if frames < 1 or len(self._held) + frames > MAX_AHEAD:
            raise RuntimeError(f"at most {MAX_AHEAD} frames are read ahead; take one first")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="prefetch", daemon=True)
            self._thread.start()
        self._finished.clear()
        self._running = True
        with self._changed:
            answers, failures = self._answers, self._failures
        self._jobs.put(_Job(source, pipeline, frames, send, at_once, answers, failures))

    def answered(self, ok: bool = True) -> None:
        """The loop has had the answer to a Predict it waited for (ok), so one more may be sent; or that
        attempt failed, and a frame waiting to be sent is not sent (the agent is unreachable or slow: the
        loop classifies it with a call of its own later)."""
        with self._changed:
            if ok:
                self._answers += 1
            else:
                self._failures += 1
            self._changed.notify_all()

    def settle(self, stop: threading.Event, wake: float = 0.2) -> bool:
        """Waits for a running read to end; False when stopped first (the read still running)."""
        while self._running:
            if self._finished.wait(wake):
                self._running = False
                self._held.extend(self._results)
                self._results = []
            elif stop.is_set():
                return False
        return True

    def recall(self) -> None:
        """Cancels the Predicts of the frames held (the agent skips one not yet run, and stops one running);
        the frames stay held, for the loop to classify with calls of their own."""
        recalled: deque[Ahead] = deque()
        for ahead in self._held:
            ahead.drop()
            recalled.append(replace(ahead, sent=None))
        self._held = recalled

    def take(self) -> Ahead | None:
        """The oldest frame read ahead (settled first), or None; each is handed out once."""
        return self._held.popleft() if self._held else None

    def close(self, timeout: float = JOIN_SECONDS) -> None:
        """Ends the worker; frames read ahead and not taken are dropped (their Predicts, if sent,
        cancelled)."""
        while self._held:
            self._held.popleft().drop()
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(None)
        thread.join(timeout)
        for ahead in self._results:
            ahead.drop()
        if thread.is_alive():
            logger.warning("the read-ahead thread is still in a read after %.1f s; leaving it", timeout)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            results: list[Ahead] = []
            for index in range(job.frames):
                ahead = read_ahead(job.source, job.pipeline)
                if job.send and ahead.prepared is not None and self._may_send(index, job):
                    ahead = send_ahead(ahead)
                results.append(ahead)
                if ahead.prepared is None:  # the source ended or failed, or a bad frame: the loop's turn
                    break
            self._results = results
            self._finished.set()

    def _may_send(self, index: int, job: _Job) -> bool:
        """Whether the job's frame `index` may be sent now, after waiting for the loop's answer it needs;
        False when the prefetcher closes first."""
        needed = job.answers + index - job.at_once + 1
        with self._changed:
            if index >= job.at_once:
                self._changed.wait_for(
                    lambda: self._closing or self._answers >= needed or self._failures > job.failures,
                    SEND_WAIT_SECONDS,  # past it, the frame is not sent (the loop calls for it itself)
                )
            return not self._closing and self._answers >= needed and self._failures == job.failures
