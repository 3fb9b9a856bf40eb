"""The inference component's wiring and run loop.

Policies, in one place:
- The agent down at start, or gone mid-run: wait with capped exponential backoff and keep the frame in
  hand; an agent that forgot the model (restart) gets it loaded again. An agent outage never turns into
  an empty result: nothing is published for a frame until the agent has classified it.
- A frame that cannot be read or preprocessed: warn, count, go on with the next one.
- Batches: up to BatchSize frames the source has ready go to the agent in one Predict (as many calls as
  the model's batch dimension needs); each still gets its own result, published in frame order.
- Under Greengrass, the core hears ERRORED only after ErroredAfterSeconds without a classified frame, and
  RUNNING again once frames are classified (see lifecycle.py).
- A result the publisher does not accept: kept in a bounded outbox (oldest dropped and counted when
  full) and sent again before the next result; a topic the core denies is logged and dropped.
- A configuration update (Greengrass SubscribeToConfigurationUpdate) is applied between frames: topic,
  interval, threshold, top-k, batch size, image source, capture sampling, log level, ERRORED delay, and
  the model (hot swap: the new one is loaded beside the old, switched to between two frames, then the old
  is unloaded); an invalid update is logged and the last good configuration stays in force; agent
  socket, publisher and RPC timeout changes need a restart (logged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent_client import AgentClient, ClientOptions
from agent_client.errors import (
    AgentError,
    AgentTimeoutError,
    AgentUnavailableError,
    ConfigError,
    EdgeError,
    FrameError,
    FrameTimeoutError,
    PublishDeniedError,
    PublishError,
)
from modelpkg.manifest import ModelManifest, load_labels, load_manifest, verify_sha256

from .classify import RemoteModel
from .config import ComponentConfig
from .frames import Classification, Frame
from .health import LifecycleReporter
from .metrics import Metrics
from .pipeline import FramePipeline, PreparedFrame
from .preprocess import Preprocessor
from .publishers import Publisher, open_publisher
from .results import ModelIdentity, to_payload
from .sampling import CaptureSampler
from .sources import FrameSource, open_source
from .status import StatusReporter, default_status_topic
from .swap import PreparedModel, prepare_model

logger = logging.getLogger(__name__)

OUTBOX_SIZE = 256
WAKE_SECONDS = 0.2  # longest wait between looks at the stop flag and configuration updates
RESTART_KEYS = ("agent_socket", "publisher", "rpc_timeout")

# Returns the new configuration when the core reported a change since the last call, else None.
ConfigUpdates = Callable[[], "ComponentConfig | None"]


class Backoff:
    """Capped exponential delays: first, 2*first, ... up to cap; reset() after a success."""

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        self.first, self.cap, self._next = first, cap, first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class InferenceApp:
    def __init__(
        self,
        config: ComponentConfig,
        stop: threading.Event | None = None,
        updates: ConfigUpdates | None = None,
        lifecycle: LifecycleReporter | None = None,
    ) -> None:
        self.config = config
        self.stop_event = stop or threading.Event()
        self._updates = updates
        self.lifecycle = lifecycle
        self._source_ended = False
        self.metrics = Metrics()
        self.counters = self.metrics.counters
        self.status: StatusReporter | None = None
        self.capture: CaptureSampler | None = None
        self.state = "STARTING"
        self.manifest: ModelManifest
        self.client: AgentClient
        self.model: RemoteModel
        self.pipeline: FramePipeline
        self.identity: ModelIdentity
        self.labels: tuple[str, ...]
        self.source: FrameSource
        self.publisher: Publisher
        self._outbox: deque[tuple[str, dict[str, Any]]] = deque()
        self._backoff = Backoff()

    def start(self) -> None:
        """Runs until stopped, the source is exhausted, or MaxFrames frames were handled."""
        self._read_model_manifest()
        self._connect_agent()
        self._load_model()
        self._build_pipeline()
        self._start_capture()
        self._open_source()
        self._open_publisher()
        self._start_status()
        self.run()

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        """Tears down in reverse order: drains captures, flushes the outbox, sends a last status message."""
        if self.capture is not None:
            self.capture.stop()
        if hasattr(self, "publisher"):
            self._flush_outbox()
            if self.status is not None and self.status.interval > 0 and hasattr(self, "identity"):
                self._sync_counters()
                self.status.report("STOPPED", self.identity, str(self.config.source_spec))
            self.publisher.close()
        if hasattr(self, "source"):
            self.source.close()
        if hasattr(self, "client"):
            self.client.close()
        logger.info("stopped: %s", self.counters)

    # -- start-up steps ---------------------------------------------------------------------------------

    def _read_model_manifest(self) -> None:
        self.manifest = load_manifest(self.config.model_path)
        verify_sha256(self.manifest)
        self.labels = load_labels(self.manifest)

    def _connect_agent(self) -> None:
        options = ClientOptions(timeout=self.config.rpc_timeout)
        self.client = AgentClient(self.config.agent_socket, options)
        while not self.stop_event.is_set():
            try:
                self.client.wait_until_ready(timeout=self._backoff.next())
                break
            except AgentUnavailableError:
                logger.info("waiting for the agent on %s", self.config.agent_socket)
                self._trouble("the agent is unreachable")
        self._backoff.reset()

    def _load_model(self) -> None:
        name = self.config.model_name or self.manifest.name
        self.model = RemoteModel(self.client, self.manifest, name)
        while not self.stop_event.is_set():
            try:
                self.model.ensure_loaded()
                break
            except (AgentUnavailableError, AgentTimeoutError) as exc:
                logger.warning("cannot load the model yet: %s", exc)
                self._trouble(f"the agent cannot load the model: {exc}")
                self.stop_event.wait(self._backoff.next())
        self._backoff.reset()

    def _build_pipeline(self) -> None:
        self.pipeline = FramePipeline(
            Preprocessor(self.manifest.preprocess, self.manifest.input.shape),
            self.model,
            self.labels,
            self.config.top_k,
            self.config.score_threshold,
        )
        self.identity = ModelIdentity(self.model.name, self.manifest.version, self.manifest.sha256)

    def _start_capture(self) -> None:
        self.capture = CaptureSampler(
            self.client, self.model.name, self.config.capture_sample_rate, self.config.capture_budget_per_hour
        )
        self.capture.start()
        self.pipeline.on_inference = self.capture.offer

    def _open_source(self) -> None:
        self.source = open_source(self.config.source_spec)

    def _open_publisher(self) -> None:
        self.publisher = open_publisher(self.config.publisher)

    def _start_status(self) -> None:
        topic = self.config.status_topic or default_status_topic()
        self.status = StatusReporter(self.publisher, topic, self.config.status_interval, self.metrics)
        logger.info("status on %s every %s s", topic, self.config.status_interval)

    def _report_status(self) -> None:
        if self.status is not None:
            self._sync_counters()
            self.status.maybe_report(self.state, self.identity, str(self.config.source_spec))

    def _sync_counters(self) -> None:
        """Copies the counts kept by other stages (model loads, captures) into the loop's counters."""
        self.counters.model_loads = getattr(getattr(self, "model", None), "loads", 0)
        self.counters.predict_calls = getattr(getattr(self, "model", None), "calls", 0)
        source = getattr(self, "source", None)
        self.counters.dropped_frames = getattr(source, "dropped", 0)
        self.counters.source_reconnects = getattr(source, "reconnects", 0)
        if self.capture is not None:
            captured = self.capture.counters
            self.counters.captures_sent = captured.sent
            self.counters.captures_dropped = captured.dropped + captured.over_budget
            self.counters.captures_failed = captured.failed

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self) -> None:
        """The loop over batches of frames; needs pipeline, source, publisher and identity in place."""
        started = float("-inf")
        while not self._done():
            if not self._sleep_after(started):
                break
            started = time.monotonic()
            batch = self._next_batch()
            if not batch:
                continue
            for result in self._classify(batch):
                self._publish(
                    to_payload(result, self.identity, self.config.top_k, self.config.score_threshold)
                )

    def _done(self) -> bool:
        limit = self.config.max_frames
        return self.stop_event.is_set() or self._source_ended or bool(limit and self.counters.frames >= limit)

    def _trouble(self, reason: str) -> None:
        if self.lifecycle is not None:
            self.lifecycle.trouble(reason)

    def _sleep_after(self, started: float) -> bool:
        """Waits until the interval (as configured now) has passed since started; False when stopped.
        Configuration updates are applied meanwhile, so a shorter interval takes effect at once."""
        while True:
            self._apply_updates()
            self._report_status()
            remaining = started + self.config.inference_interval - time.monotonic()
            if remaining <= 0:
                return not self._done()
            if self.stop_event.wait(min(remaining, WAKE_SECONDS)):
                return False

    def _apply_updates(self) -> None:
        if self._updates is None:
            return
        try:
            new = self._updates()
        except ConfigError as exc:
            logger.error("configuration update rejected, the last good configuration stays: %s", exc)
            return
        if new is not None and new != self.config:
            self.reconfigure(new)

    def reconfigure(self, new: ComponentConfig) -> None:
        """Applies what can change while running; a new source is opened first: a bad one changes nothing."""
        old = self.config
        source: FrameSource | None = None
        incoming: PreparedModel | None = None
        try:
            if new.source_spec != old.source_spec:
                source = open_source(new.source_spec)
            if (new.model_path, new.model_name) != (old.model_path, old.model_name):
                incoming = prepare_model(self.client, new.model_path, new.model_name, self.model.name)
        except EdgeError as exc:
            if source is not None:
                source.close()
            logger.error("configuration update rejected, the last good configuration stays: %s", exc)
            return
        if source is not None:
            self.source.close()
            self.source = source
        if incoming is not None:
            self._switch_model(incoming, new)
        for key in RESTART_KEYS:
            if getattr(new, key) != getattr(old, key):
                logger.warning("%s changed; it takes effect when the component restarts", key)
        self.pipeline.k, self.pipeline.threshold = new.top_k, new.score_threshold
        if self.capture is not None:
            self.capture.rate, self.capture.budget_per_hour = (
                new.capture_sample_rate,
                new.capture_budget_per_hour,
            )
        if self.lifecycle is not None:
            self.lifecycle.errored_after = new.errored_after
        logging.getLogger().setLevel(new.log_level)
        self.config = new.model_copy(update={key: getattr(old, key) for key in RESTART_KEYS})
        logger.info(
            "configuration applied: topic %s, interval %s s, top-k %d, threshold %s, source %s",
            new.topic,
            new.inference_interval,
            new.top_k,
            new.score_threshold,
            new.source_spec,
        )

    def _switch_model(self, incoming: PreparedModel, config: ComponentConfig) -> None:
        """Makes the prepared model the one every following frame uses, then unloads the old one."""
        outgoing = self.model
        self.manifest, self.labels, self.model = incoming.manifest, incoming.labels, incoming.model
        on_inference = self.pipeline.on_inference
        self.pipeline = FramePipeline(
            incoming.preprocessor, incoming.model, incoming.labels, config.top_k, config.score_threshold
        )
        self.pipeline.on_inference = on_inference
        self.identity = incoming.identity
        if self.capture is not None:
            self.capture.model_name = incoming.model.name
        logger.info("switched from model %s to %s", outgoing.name, incoming.model.name)
        try:
            self.client.unload_model(outgoing.name)
        except AgentError as exc:
            logger.warning("could not unload the previous model %s: %s", outgoing.name, exc)

    def _next_batch(self) -> list[PreparedFrame]:
        """Up to BatchSize frames, prepared for the model: the first one waited for, the rest only while the
        source has them ready; frames that cannot be used are skipped and counted."""
        batch: list[PreparedFrame] = []
        wanted = self.config.batch_size
        if self.config.max_frames:
            wanted = min(wanted, self.config.max_frames - self.counters.frames)
        while len(batch) < wanted and not self.stop_event.is_set():
            frame = self._next_frame(first=not batch)
            if frame is None:
                break
            try:
                batch.append(self.pipeline.prepare(frame))
            except FrameError as exc:
                self.counters.bad_frames += 1
                logger.warning("skipping frame %d: %s", frame.frame_id, exc)
        return batch

    def _next_frame(self, first: bool) -> Frame | None:
        try:
            frame = self.source.next_frame()
        except FrameTimeoutError as exc:
            logger.debug("%s", exc)  # a live source is between frames or reconnecting
            if first:
                self.state = "WAITING_FOR_SOURCE"
                self._trouble(f"no frame from the source: {exc}")
            return None
        except FrameError as exc:
            self.counters.frames += 1
            self.counters.bad_frames += 1
            logger.warning("skipping a frame: %s", exc)
            self._trouble(f"the source gives unusable frames: {exc}")
            return None
        if frame is None:
            logger.info("the source has no more frames")
            self._source_ended = True
            return None
        self.counters.frames += 1
        return frame

    def _classify(self, batch: list[PreparedFrame]) -> list[Classification]:
        """Classifies the batch, waiting out agent outages; empty if it cannot be classified or we stop."""
        first = batch[0].frame.frame_id
        outage_started: float | None = None
        while not self.stop_event.is_set():
            try:
                results = self.pipeline.infer(batch)
            except (AgentUnavailableError, AgentTimeoutError) as exc:
                if outage_started is None:
                    outage_started = time.monotonic()
                    self.counters.agent_outages += 1
                    self.state = "WAITING_FOR_AGENT"
                    logger.warning(
                        "agent unreachable, holding %d frame(s) from %d and retrying: %s",
                        len(batch),
                        first,
                        exc,
                    )
                self._trouble(f"the agent is unreachable: {exc}")
                self.stop_event.wait(self._backoff.next())
                self._report_status()
                continue
            except AgentError as exc:
                self.counters.failed_frames += len(batch)
                logger.error("the agent could not classify %d frame(s) from %d: %s", len(batch), first, exc)
                self._trouble(f"the agent cannot classify: {exc}")
                return []
            if outage_started is not None:
                logger.info("agent back after %.1f s", time.monotonic() - outage_started)
            self._backoff.reset()
            self.state = "RUNNING"
            if self.lifecycle is not None:
                self.lifecycle.classified()
            for result in results:
                self.metrics.frame_classified(result.latency)
            return results
        return []

    def _publish(self, payload: dict[str, Any]) -> None:
        if len(self._outbox) >= OUTBOX_SIZE:
            self._outbox.popleft()
            self.counters.dropped_results += 1
            logger.warning("outbox full: dropped the oldest unpublished result")
        self._outbox.append((self.config.topic, payload))
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        while self._outbox:
            topic, payload = self._outbox[0]
            try:
                self.publisher.publish(topic, payload)
            except PublishDeniedError as exc:
                self._outbox.popleft()
                self.counters.publish_failures += 1
                self.counters.dropped_results += 1
                logger.error("%s", exc)
                continue
            except PublishError as exc:
                self.counters.publish_failures += 1
                logger.warning("publish failed, %d result(s) kept for retry: %s", len(self._outbox), exc)
                return
            self._outbox.popleft()
            self.counters.published += 1
