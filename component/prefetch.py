"""Reading ahead: the next frame read and preprocessed on a worker thread while a batch is on the agent.

A Predict is a wait on the agent's socket (the GIL released), so the frame after the batch can be read and
prepared meanwhile instead of after the reply. The run loop (loop.py) holds the policies; this stage only
moves the two calls it would make next, `source.next_frame()` and `pipeline.prepare(frame)`, onto the
worker, and hands back what they returned or raised for the loop to handle in their place:

- At most one frame ahead, and only one read at a time: `start()` is refused while a frame is held.
- The loop starts a read only while a Predict is in flight and only when the next frame is due at once
  (InferenceInterval 0, MaxFrames not reached); it settles (waits for the read to end) before it applies
  updates (`host.between()`) or reads the source itself, so the worker never runs beside a source or
  model swap and the source is only ever read by one thread.
- What was read ahead is taken next, in order; nothing is counted here (the loop counts when it takes).
  The frame is kept through an outage; a tensor prepared by a pipeline that is no longer the active one is
  prepared again by the new one (`Ahead.prepared_by`). It is dropped only at stop.
- `close()` ends the worker, joined within a bound (a read blocks at most a live source's wait).
- Sending ahead (`send=True`, which the loop asks for with BatchSize 1): once the frame is prepared, its
  Predict is sent too, without waiting for the answer, so that the agent has the next frame's request
  while the loop still waits for the current one's (two on the agent, its gaps between requests filled).
  The loop takes the answer as its first attempt for that frame, under all its policies
  (`Ahead.sent_for`); a Predict sent by a pipeline that is no longer the active one, or for a frame
  prepared again, is cancelled and the frame classified anew; one not taken at stop is cancelled.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .frames import Frame
from .pipeline import PreparedFrame, SentBatch
from .sources import FrameSource

logger = logging.getLogger(__name__)

JOIN_SECONDS = 2.0  # longest wait for the worker at close; a live source's read gives up after 1 s


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
        """Gives up what was sent ahead (the loop stops without taking it)."""
        if self.sent is not None:
            self.sent.cancel()


def read_ahead(source: FrameSource, pipeline: Preparer, send: bool = False) -> Ahead:
    """Reads and prepares the next frame, every outcome kept for the loop to handle (nothing swallowed:
    an unexpected exception is re-raised by the loop where the call would have raised it); with `send`,
    also sends its Predict (a batch of that one frame) without waiting for the answer."""
    try:
        frame = source.next_frame()
    except Exception as exc:  # handed back to the loop, re-raised there (Ahead.read)
        return Ahead(None, pipeline, read_error=exc)
    if frame is None:
        return Ahead(None, pipeline)
    try:
        prepared = pipeline.prepare(frame)
    except Exception as exc:  # handed back to the loop, re-raised there (Ahead.prepare)
        return Ahead(frame, pipeline, prepare_error=exc)
    sent = None
    if send:
        try:
            sent = pipeline.send([prepared])
        except Exception:  # not sent ahead: the loop makes the call itself, and that raises what is wrong
            logger.debug("frame %d could not be sent ahead", frame.frame_id, exc_info=True)
    return Ahead(frame, pipeline, prepared=prepared, sent=sent)


class Prefetcher:
    """One worker thread, one frame ahead. Driven by one thread (the run loop's)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[FrameSource, Preparer, bool] | None] = queue.SimpleQueue()
        self._finished = threading.Event()
        self._result: Ahead | None = None
        self._running = False
        self._ahead: Ahead | None = None
        self._thread: threading.Thread | None = None

    @property
    def holding(self) -> bool:
        """A read is running or its outcome waits to be taken."""
        return self._running or self._ahead is not None

    @property
    def running(self) -> bool:
        return self._running

    def start(self, source: FrameSource, pipeline: Preparer, send: bool = False) -> None:
        """Begins reading and preparing the next frame of source with pipeline on the worker (and sending
        its Predict: see read_ahead)."""
        if self.holding:
            raise RuntimeError("a frame is already read ahead; take it first")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="prefetch", daemon=True)
            self._thread.start()
        self._finished.clear()
        self._running = True
        self._jobs.put((source, pipeline, send))

    def settle(self, stop: threading.Event, wake: float = 0.2) -> bool:
        """Waits for a running read to end; False when stopped first (the read still running)."""
        while self._running:
            if self._finished.wait(wake):
                self._running = False
                self._ahead, self._result = self._result, None
            elif stop.is_set():
                return False
        return True

    def take(self) -> Ahead | None:
        """What was read ahead (settled first), or None; it is handed out once."""
        ahead, self._ahead = self._ahead, None
        return ahead

    def close(self, timeout: float = JOIN_SECONDS) -> None:
        """Ends the worker; a frame read ahead and not taken is dropped (its Predict, if sent, cancelled)."""
        if self._ahead is not None:
            self._ahead.drop()
        self._ahead = None
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(None)
        thread.join(timeout)
        if self._result is not None:
            self._result.drop()
        if thread.is_alive():
            logger.warning("the read-ahead thread is still in a read after %.1f s; leaving it", timeout)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._result = read_ahead(*job)
            self._finished.set()
