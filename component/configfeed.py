"""The component's configuration as the core delivers it, handled the way both cores send it.

- Subscribed to configuration updates before the first GetConfiguration, so no change falls in between.
- Any update event means "read the whole configuration again" (nucleus lite sends one event per changed key
  and none for a RESET): `poll()` returns the new configuration once, and keeps the change pending until a
  read succeeded (a read that fails for a passing reason is tried again with backoff, never dropped).
- A burst of events is read once it settles (no event for SETTLE_S, at most MAX_HOLD_S after the first):
  nucleus lite writes a deployment's keys one at a time, each with its event, so a read at the first event
  may see only part of it. A part read all the same (a slow core) is applied or refused on its own, and
  the next event brings the whole (reconfigure.py).
- A stream the core closes is subscribed again (and the configuration read again, since events may have
  been missed meanwhile).
- Validation before a deployment applies (the Java nucleus: SubscribeToValidateConfigurationUpdates and
  SendConfigurationValidityReport): each proposed configuration is checked with `check` on a worker thread
  and reported ACCEPTED or REJECTED with the reason, so a bad MERGE fails the deployment and the running
  component keeps its configuration. Nucleus lite offers no validation: there the component refuses an
  invalid configuration when its update event arrives (see app.py).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from agent_client.errors import CoreError, CoreUnsupportedError

from .backoff import Backoff
from .ipc import CoreConnection, Subscription

logger = logging.getLogger(__name__)

SETTLE_S = 0.2
MAX_HOLD_S = 2.0

# A proposed configuration -> None when it can be applied, else why not (in the component's own words).
Check = Callable[[dict[str, Any]], str | None]


class ConfigurationFeed:
    def __init__(self, core: CoreConnection, check: Check | None = None) -> None:
        self.core = core
        self.check = check
        self.validation = False  # whether the core offers validation (the Java nucleus does)
        self.reads = 0
        self.read_failures = 0
        self.resubscribes = 0
        self.validations: dict[str, int] = {"accepted": 0, "rejected": 0, "report_failures": 0}
        self._changed = threading.Event()
        self._stream_closed = threading.Event()
        self._streams: list[Subscription] = []
        self._live: set[int] = set()  # streams that were established and not closed by us
        self._keys = itertools.count(1)
        self._backoff = Backoff(0.5, 10.0)
        self._retry_at = 0.0
        self._burst: tuple[float, float] | None = None  # (first, last) event times of the pending change
        self._proposals: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(maxsize=16)
        self._validator = threading.Thread(target=self._validate_loop, name="config-validation", daemon=True)

    def start(self) -> dict[str, Any]:
        """Subscribes (updates, and validation where the core offers it), then reads the configuration."""
        self._subscribe()
        if self.check is not None:
            self._validator.start()
        logger.info("watching the component configuration for updates")
        configuration = self.core.get_configuration()
        self.reads += 1
        return configuration

    def poll(self) -> dict[str, Any] | None:
        """The whole configuration when it changed since the last successful read, else None."""
        if self._stream_closed.is_set() and time.monotonic() >= self._retry_at:
            try:
                self._subscribe()
                self.resubscribes += 1
                self._changed.set()
            except CoreError as exc:
                self._retry_later(f"subscribing to configuration updates again failed: {exc}")
                return None
        if not self._changed.is_set() or time.monotonic() < self._retry_at or self._settling():
            return None
        self._changed.clear()
        self._burst = None
        try:
            configuration = self.core.get_configuration()
        except CoreError as exc:
            self._changed.set()  # still pending: tried again after the backoff
            self.read_failures += 1
            self._retry_later(f"reading the updated configuration failed: {exc}")
            return None
        self._backoff.reset()
        self.reads += 1
        return configuration

    def counts(self) -> dict[str, int]:
        return {
            "config_reads": self.reads,
            "config_read_failures": self.read_failures,
            "config_resubscribes": self.resubscribes,
            "config_validations_accepted": self.validations["accepted"],
            "config_validations_rejected": self.validations["rejected"],
        }

    def close(self) -> None:
        self._live.clear()  # what closes from now on is ours closing
        for stream in self._streams:
            stream.close()
        self._streams = []
        if self._validator.is_alive():
            with contextlib.suppress(queue.Full):
                self._proposals.put_nowait(None)
            self._validator.join(2.0)

    def _settling(self) -> bool:
        """Events of one deployment may still be coming (see the module docstring)."""
        burst, now = self._burst, time.monotonic()
        return burst is not None and now - burst[1] < SETTLE_S and now - burst[0] < MAX_HOLD_S

    def _retry_later(self, why: str) -> None:
        delay = self._backoff.next()
        self._retry_at = time.monotonic() + delay
        logger.warning("%s; trying again in %.1f s", why, delay)

    def _subscribe(self) -> None:
        self._live.clear()  # closing our own streams below is not the core closing them
        for stream in self._streams:
            stream.close()
        self._streams = []
        self._stream_closed.clear()
        key = next(self._keys)
        self._streams.append(self.core.subscribe_to_configuration_updates(self._on_update, self._closed(key)))
        self._live.add(key)
        if self.check is None:
            return
        key = next(self._keys)
        try:
            self._streams.append(
                self.core.subscribe_to_validate_configuration_updates(self._on_proposal, self._closed(key))
            )
            self._live.add(key)
            self.validation = True
        except CoreUnsupportedError:
            if self.validation or not self.resubscribes:
                logger.info(
                    "this core offers no configuration validation (nucleus lite): an invalid update is "
                    "refused when it arrives, and the last good configuration stays"
                )
            self.validation = False

    # -- SDK callbacks: they run on the connection's event-loop thread and only hand work on ----------

    def _on_update(self, event: Any) -> None:
        update = getattr(event, "configuration_update_event", None)
        logger.debug("configuration updated: %s", getattr(update, "key_path", None))
        now = time.monotonic()
        self._burst = (self._burst[0] if self._burst else now, now)
        self._changed.set()

    def _closed(self, key: int) -> Callable[[], None]:
        def on_closed() -> None:
            if key in self._live:  # an established stream the core ended: subscribe again
                self._live.discard(key)
                logger.warning("the core closed a configuration stream; subscribing again")
                self._stream_closed.set()

        return on_closed

    def _on_proposal(self, event: Any) -> None:
        proposal = getattr(event, "validate_configuration_update_event", None)
        deployment = str(getattr(proposal, "deployment_id", "") or "")
        configuration = getattr(proposal, "configuration", None)
        try:
            self._proposals.put_nowait((deployment, configuration if isinstance(configuration, dict) else {}))
        except queue.Full:
            logger.error(
                "too many configuration validations at once; deployment %s is not answered", deployment
            )

    def _validate_loop(self) -> None:
        assert self.check is not None
        while (item := self._proposals.get()) is not None:
            deployment, configuration = item
            reason = self.check(configuration)
            accepted = reason is None
            self.validations["accepted" if accepted else "rejected"] += 1
            message = "configuration accepted" if accepted else str(reason)
            log = logger.info if accepted else logger.error
            log(
                "deployment %s: %s", deployment, message if accepted else f"configuration rejected: {message}"
            )
            try:
                self.core.send_configuration_validity_report(deployment, accepted, message)
            except CoreError as exc:
                self.validations["report_failures"] += 1
                logger.error("could not report the validation of deployment %s: %s", deployment, exc)
