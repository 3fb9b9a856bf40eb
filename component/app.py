"""The inference component's wiring: what runs, in which order.

`start()` brings the stages up in order; `run()` is the run loop (loop.py holds its policies); `close()` takes
everything down in reverse: unsent results are kept for the next start, a last status message says
STOPPED. Between frames the loop calls `between()`: the watchdog's beat, configuration updates
(reconfigure.py), a model package that moved (a new version of the model component).

Start-up never ends in an exit the core would count as an error: an agent that is not there yet is waited
for (the log says after a few seconds what is at its socket), and a model package or source that cannot be
used blocks start-up, said on the status topic and in the log, until a configuration update names one
that can.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_client import AgentClient, ClientOptions
from agent_client.errors import (
    AgentTimeoutError,
    AgentUnavailableError,
    AgentUntrustedError,
    ConfigError,
    EdgeError,
    SourceError,
)
from agent_client.sockets import describe_socket

from .backoff import Backoff
from .config import ComponentConfig
from .health import RestartBudget, StateSender, Watchdog
from .ipc import CoreConnection
from .loop import RunLoop
from .metrics import Metrics
from .outbox import ResultOutbox
from .packages import deployed_agent_socket, model_folder
from .publishers import open_publisher
from .reconfigure import ConfigurationStatus, Reconfigurer
from .sampling import CaptureSampler
from .sources import FrameSource, open_source
from .status import StatusReporter, default_status_topic
from .swap import ActiveModel, prepare_model, retire
from .video import VideoSource

logger = logging.getLogger(__name__)

SPILL = "unpublished-results.jsonl"
RESTARTS = "watchdog-restarts.json"
WARN_AFTER_S = 5.0
LOAD_ALLOWANCE_S = 120.0  # the longest a LoadModel may legitimately take
WAITING_FOR_CONFIG = "waiting for a configuration that works"
MOVED_CHECK_S = 1.0  # how often the model folder is resolved again (a path walk: not on every frame)

# Returns the core's whole configuration when it changed since the last call, else None.
Updates = Callable[[], "dict[str, Any] | None"]


@dataclass
class StartOptions:
    """How the component was started: command-line values (they stay under Greengrass's), the IPC
    connection and state folder under Greengrass, and what the start-up configuration came to."""

    cli: Mapping[str, Any] = field(default_factory=dict)
    core: CoreConnection | None = None
    state_dir: Path | None = None
    send_state: StateSender | None = None
    configuration: ConfigurationStatus = field(default_factory=ConfigurationStatus)


class InferenceApp:
    def __init__(
        self,
        config: ComponentConfig,
        stop: threading.Event | None = None,
        updates: Updates | None = None,
        options: StartOptions | None = None,
    ) -> None:
        self.config = config
        self.stop_event = stop or threading.Event()
        self._updates = updates
        self.options = options or StartOptions()
        self.configuration = self.options.configuration
        self.metrics = Metrics()
        self.loop = RunLoop(self, self.stop_event)
        self.client: AgentClient | None = None
        self.active: ActiveModel
        self.source: FrameSource
        self.outbox: ResultOutbox
        self.sampler: CaptureSampler | None = None
        self.status: StatusReporter | None = None
        self.watchdog: Watchdog | None = None
        self.reconfigurer = Reconfigurer(self)
        self._backoff = Backoff(1.0, 30.0)
        self._moved_checked = -math.inf

    @property
    def state(self) -> str:
        if self.watchdog is not None and self.watchdog.wedged:
            return "WEDGED"
        return self.loop.state

    # -- start-up, in order ---------------------------------------------------------------------------

    def start(self) -> None:
        """Brings every stage up; returns when the component is ready to classify (or was stopped)."""
        self._open_outbox()
        self._start_status()
        self._start_watchdog()
        self._connect_agent()
        self._load_model()
        self._open_source()
        self._start_sampling()
        if self.ready:
            self.reconfigurer.keep_last_good()

    @property
    def ready(self) -> bool:
        return hasattr(self, "source") and hasattr(self, "active") and self.sampler is not None

    def run(self) -> None:
        """The run loop (loop.py), once start() has brought everything up."""
        if self.ready:
            logger.info("classifying frames from %s with %s", self.config.describe_source(), self.active.name)
            self.loop.run()

    def stop(self) -> None:
        self.stop_event.set()

    def _open_outbox(self) -> None:
        publisher = open_publisher(self.config.publisher, self.options.core)
        spill = self.options.state_dir / SPILL if self.options.state_dir else None
        self.outbox = ResultOutbox(publisher, spill_path=spill)
        self.outbox.restore()

    def _start_status(self) -> None:
        topic = self.config.status_topic or default_status_topic()
        self.status = StatusReporter(self.outbox.publisher, topic, self.config.status_interval, self.snapshot)
        self.status.start()
        logger.info("status on %s every %s s", topic, self.config.status_interval)

    def _start_watchdog(self) -> None:
        folder = self.options.state_dir
        budget = RestartBudget(folder / RESTARTS if folder else None)
        self.watchdog = Watchdog(
            self.options.send_state, self.config.errored_after, budget, on_exit=self._save_before_exit
        )
        if self.status is not None:
            self.watchdog.watch(self.status.thread)
        self.watchdog.start()

    def agent_socket(self) -> Path:
        from agent_client.client import DEFAULT_SOCKET

        return self.config.agent_socket or deployed_agent_socket() or Path(DEFAULT_SOCKET)

    def describe_agent(self) -> str:
        path = self.agent_socket()
        return f"{describe_socket(path)}; start it with `python -m agent --socket {path} --models-root DIR`"

    def _connect_agent(self) -> None:
        path = self.agent_socket()
        self.client = AgentClient(path, ClientOptions(timeout=self.config.rpc_timeout))
        self.loop.state = "WAITING_FOR_AGENT"
        started, warned, backoff = time.monotonic(), 0.0, Backoff(0.25, 5.0)
        while not self.stop_event.is_set():
            try:
                self.client.wait_until_ready(timeout=backoff.next())
                return
            except AgentUntrustedError as exc:
                self.loop.state = "AGENT_UNTRUSTED"
                if time.monotonic() - warned >= 60.0:
                    warned = time.monotonic()
                    logger.error("%s", exc)
                self.stop_event.wait(backoff.next())
            except AgentUnavailableError:
                waited = time.monotonic() - started
                if waited >= WARN_AFTER_S and time.monotonic() - warned >= 60.0:
                    warned = time.monotonic()
                    logger.warning(
                        "no agent answers on %s after %.0f s: %s", path, waited, self.describe_agent()
                    )
                else:
                    logger.info("waiting for the agent on %s", path)
            self.between()

    def _load_model(self) -> None:
        """The configured package, loaded; a package that cannot be used blocks here (status says why) until
        a configuration update names a usable one; a passing agent failure is retried."""
        while not self.stop_event.is_set():
            try:
                self.active = self.prepare(self.config)
                return
            except (AgentUnavailableError, AgentTimeoutError, AgentUntrustedError) as exc:
                logger.warning("cannot load the model yet: %s", exc)
                self.loop.state = (
                    "AGENT_UNTRUSTED" if isinstance(exc, AgentUntrustedError) else "WAITING_FOR_AGENT"
                )
            except EdgeError as exc:
                if self._updates is None:  # outside Greengrass no update can come: say what to do, exit 2
                    raise ConfigError(f"the model cannot be used: {exc}{self._no_bundled_model()}") from exc
                self.configuration.refuse(f"the model cannot be used: {exc}", WAITING_FOR_CONFIG)
            self._wait_for_change(self._backoff.next())

    def _no_bundled_model(self) -> str:
        if self.config.model_path is not None or model_folder(None, self.config.model_variant).is_dir():
            return ""
        return (
            "; no model package was given and none is bundled here (an installed wheel ships none): pass "
            "--model-path FOLDER, a package with manifest.json (python -m modelprep manifest makes one)"
        )

    def prepare(self, config: ComponentConfig, running: str | None = None) -> ActiveModel:
        assert self.client is not None
        folder = model_folder(config.model_path, config.model_variant)
        self.beat(LOAD_ALLOWANCE_S)  # LoadModel of a large model may take this long
        return prepare_model(
            self.client, folder, config.model_name, config.top_k, config.score_threshold, running
        )

    def _open_source(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.source = open_source(self.config.source_spec, max_pixels=self.config.max_frame_pixels)
                self.watch_source(self.source)
                return
            except SourceError as exc:
                if self._updates is None:
                    raise ConfigError(
                        f"the source cannot be opened: {exc}; pass --source, --image-directory or"
                        " --image-name"
                    ) from exc
                self.configuration.refuse(f"the source cannot be opened: {exc}", WAITING_FOR_CONFIG)
            self._wait_for_change(self._backoff.next())

    def _start_sampling(self) -> None:
        if self.client is None or not hasattr(self, "active"):
            return  # stopped before the model was loaded
        self.sampler = CaptureSampler(
            self.client,
            self.active.name,
            self.config.capture_sample_rate,
            self.config.capture_budget_per_hour,
        )
        self.sampler.start()
        self.active.pipeline.on_inference = self.sampler.offer
        if self.watchdog is not None:
            self.watchdog.watch(self.sampler.thread)

    def watch_source(self, source: FrameSource) -> None:
        if self.watchdog is not None and isinstance(source, VideoSource):
            self.watchdog.watch(source.thread)

    def replace_source(self, source: FrameSource) -> None:
        """Put a proven source in place of the running one, whose reader thread then ends on purpose."""
        old = self.source
        if self.watchdog is not None and isinstance(old, VideoSource):
            self.watchdog.forget(old.thread)
        old.close()
        self.source = source
        self.watch_source(source)

    def _wait_for_change(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            before = self.config
            self.between()
            if self.config is not before:
                return
            self.stop_event.wait(0.2)

    # -- between frames -------------------------------------------------------------------------------

    def beat(self, allow: float = 0.0) -> None:
        if self.watchdog is not None:
            self.watchdog.beat(allow)

    def between(self) -> None:
        self.beat()
        outbox = getattr(self, "outbox", None)
        if outbox is not None:
            outbox.retry()  # results the core did not accept yet, even when no new result comes
        if self._updates is not None:
            raw = self._updates()
            if raw is not None:
                self.reconfigurer.offer(raw)
        self.reconfigurer.tick()
        active = getattr(self, "active", None)
        if active is not None and not self.reconfigurer.pending and self._moved(active):
            logger.info("the model package %s now resolves elsewhere: loading it", active.folder)
            try:
                self.reconfigurer.swap_model(self.config)
            except EdgeError as exc:
                logger.error("the new package cannot be used; the running model stays: %s", exc)

    def _moved(self, active: ActiveModel) -> bool:
        """active.moved(), looked at once per MOVED_CHECK_S."""
        now = time.monotonic()
        if now - self._moved_checked < MOVED_CHECK_S:
            return False
        self._moved_checked = now
        return active.moved()

    # -- status and shutdown --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The status message's content (built on the status thread from the stages' own counts)."""
        counters: dict[str, int] = {**self.loop.counts()}
        for stage in (getattr(self, "source", None), self.sampler, getattr(self, "outbox", None)):
            if stage is not None:
                counters.update(stage.counts())
        active = getattr(self, "active", None)
        if active is not None:
            counters.update(active.model.counts())
        identity = active.identity if active is not None else None
        return {
            "state": self.state,
            "model": {"name": identity.name, "version": identity.version, "sha256": identity.sha256}
            if identity
            else None,
            "source": self.config.describe_source(),
            "fps": round(self.metrics.fps(), 2),
            "latency-ms": self.metrics.latency_percentiles(),
            "counters": counters,
            "configuration": self.configuration.as_json(),
            "process": self.metrics.process(),
        }

    def _save_before_exit(self) -> None:
        if hasattr(self, "outbox"):
            self.outbox.spill()

    def _release_model(self) -> None:
        """Unloads the model under a name the component chose (never one a user set: ModelName), so that an
        agent that outlives the component keeps nothing it no longer serves. Measured on nucleus lite: a
        model component upgrade left the agent holding both names, 162 MB instead of 112."""
        assert self.client is not None
        active = getattr(self, "active", None)
        if active is not None and active.model.owned:
            retire(self.client, active)

    def close(self) -> None:
        """Tears down in reverse order: captures drained, results sent or kept, a last status, connections."""
        if self.sampler is not None:
            self.sampler.stop()
        if hasattr(self, "outbox"):
            self.outbox.flush()
            self.outbox.spill()
        if self.status is not None:
            self.status.stop("STOPPED")
        if self.watchdog is not None:
            self.watchdog.stop()
        if hasattr(self, "source"):
            self.source.close()
        if self.client is not None:
            self._release_model()
            self.client.close()
        if hasattr(self, "outbox"):
            self.outbox.publisher.close()
        logger.info("stopped: %s", self.loop.counts())
