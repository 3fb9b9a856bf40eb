"""Configuration updates applied to the running component: all of an update or none of it, between frames.

- Parsed first (unknown keys ignored and reported: nucleus lite cannot refuse them before it stores them);
  an invalid value refuses the whole update, with the reason logged and shown on the status topic.
- What can fail comes before anything changes: a new source is opened and, if live, must deliver a first
  frame before it replaces the working one; a new model package is checked and loaded beside the running
  model (swap.py). Then the switch, then the settings that apply at once.
- An update that fails for a passing reason (the agent unreachable or slow during a model swap) stays
  pending and is tried again with backoff; it is never dropped.
- AgentSocket, Publisher and RpcTimeoutSeconds take effect at the next start (logged, and listed as
  "restart-needed" on the status topic).
- Every applied configuration is kept in the work folder (last-good-config.json), so that a restart with a
  configuration the core stored but the component refused starts from the last good one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_client.errors import AgentTimeoutError, AgentUnavailableError, ConfigError, EdgeError, SourceError

from .backoff import Backoff
from .config import RESTART_KEYS, ComponentConfig, parse_component_config, unknown_keys
from .files import write_private
from .sources import FrameSource, open_source
from .status import default_status_topic
from .swap import retire
from .video import VideoSource

if TYPE_CHECKING:
    from .app import InferenceApp

logger = logging.getLogger(__name__)

LAST_GOOD = "last-good-config.json"
LIVE_SOURCE_PROOF_S = 10.0


@dataclass
class ConfigurationStatus:
    """What became of the configuration the core gave: shown on the status topic."""

    state: str = "APPLIED"  # APPLIED | REFUSED | PENDING
    reason: str = ""
    ignored: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = ()
    refusals: int = 0
    applied: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "ignored-keys": list(self.ignored),
            "restart-needed": list(self.restart_needed),
            "refusals": self.refusals,
            "applied": self.applied,
        }

    def note_ignored(self, keys: tuple[str, ...]) -> None:
        """The unknown keys of the configuration the core holds (reported whether or not the rest applies)."""
        if keys and keys != self.ignored:
            logger.error(
                "unknown configuration key(s) %s ignored (remove them with a RESET; --help lists the keys)",
                ", ".join(keys),
            )
        self.ignored = keys

    def refuse(self, reason: str, stays: str = "the last good configuration stays") -> None:
        first = self.state != "REFUSED" or self.reason != reason
        self.state, self.reason = "REFUSED", reason
        if first:
            self.refusals += 1
            logger.error("configuration refused, %s: %s", stays, reason)


class Reconfigurer:
    """Applies configurations from the core to `app` (see the module docstring)."""

    def __init__(self, app: InferenceApp) -> None:
        self.app = app
        self.status = app.configuration
        self._pending: dict[str, Any] | None = None
        self._retry_at = 0.0
        self._backoff = Backoff(1.0, 30.0)

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def offer(self, raw: dict[str, Any]) -> None:
        """A new configuration from the core; the latest one replaces any still pending."""
        self._pending, self._retry_at = raw, 0.0

    def tick(self) -> None:
        """Applies the pending configuration when it is due."""
        if self._pending is not None and time.monotonic() >= self._retry_at:
            self._apply(self._pending)

    def _apply(self, raw: dict[str, Any]) -> None:
        app = self.app
        self.status.note_ignored(unknown_keys(raw))
        try:
            parsed = parse_component_config(app.options.cli, raw)
        except ConfigError as exc:
            self._pending = None
            self.status.refuse(str(exc))
            return
        try:
            self._reconfigure(app.config, parsed.config)
        except (AgentUnavailableError, AgentTimeoutError) as exc:
            delay = self._backoff.next()
            self._retry_at = time.monotonic() + delay
            self.status.state, self.status.reason = "PENDING", str(exc)
            logger.warning("configuration update postponed (%s); trying again in %.0f s", exc, delay)
            return
        except EdgeError as exc:
            self._pending = None
            self.status.refuse(str(exc))
            return
        self._pending = None
        self._backoff.reset()
        self.status.state, self.status.reason = "APPLIED", ""
        self.status.applied += 1
        self.keep_last_good()

    def _reconfigure(self, old: ComponentConfig, new: ComponentConfig) -> None:
        """Everything that can fail first (source, model), then the switch; EdgeError leaves old in force."""
        if new == old:
            return
        app = self.app
        if not app.ready:  # still starting: start-up opens what the new configuration names
            app.config = new
            return
        source_changed = (new.source_spec, new.max_frame_pixels) != (old.source_spec, old.max_frame_pixels)
        model_changed = (new.model_path, new.model_variant, new.model_name) != (
            old.model_path,
            old.model_variant,
            old.model_name,
        )
        source = self._proven_source(new) if source_changed else None
        try:
            if model_changed:
                self.swap_model(new)
        except BaseException:
            if source is not None:
                source.close()
            raise
        if source is not None:
            app.replace_source(source)
        self._apply_live(old, new)

    def _proven_source(self, config: ComponentConfig) -> FrameSource:
        source = open_source(config.source_spec, max_pixels=config.max_frame_pixels)
        live = isinstance(source, VideoSource) and source.live
        if live and not source.wait_ready(LIVE_SOURCE_PROOF_S, self.app.stop_event):  # type: ignore[attr-defined]
            source.close()
            raise SourceError(
                f"{config.describe_source()} gave no frame within {LIVE_SOURCE_PROOF_S:g} s; the working "
                f"source stays"
            )
        return source

    def swap_model(self, config: ComponentConfig) -> None:
        """Loads config's model package beside the running one, switches to it, unloads the old one."""
        app = self.app
        outgoing = app.active
        incoming = app.prepare(config, running=outgoing.name)
        incoming.pipeline.on_inference = app.sampler.offer if app.sampler else None
        app.active = incoming
        if app.sampler is not None:
            app.sampler.model_name = incoming.name
        if outgoing.name != incoming.name and app.client is not None:
            logger.info("switched from model %s to %s", outgoing.name, incoming.name)
            retire(app.client, outgoing)

    def _apply_live(self, old: ComponentConfig, new: ComponentConfig) -> None:
        app = self.app
        pipeline = app.active.pipeline
        pipeline.k, pipeline.threshold = new.top_k, new.score_threshold
        if app.sampler is not None:
            app.sampler.rate, app.sampler.budget_per_hour = (
                new.capture_sample_rate,
                new.capture_budget_per_hour,
            )
        if app.watchdog is not None:
            app.watchdog.errored_after = new.errored_after
        if app.status is not None:
            app.status.reconfigure(new.status_topic or default_status_topic(), new.status_interval)
        logging.getLogger().setLevel(new.log_level)
        later = tuple(key for key in RESTART_KEYS if getattr(new, key) != getattr(old, key))
        for key in later:
            logger.warning("%s changed; it takes effect when the component restarts", key)
        self.status.restart_needed = later
        app.config = new.replace(**{key: getattr(old, key) for key in RESTART_KEYS})
        logger.info(
            "configuration applied: topic %s, interval %s s, top-k %d, threshold %s, source %s, model %s",
            new.topic,
            new.inference_interval,
            new.top_k,
            new.score_threshold,
            new.describe_source(),
            app.active.name,
        )

    def keep_last_good(self) -> None:
        folder = self.app.options.state_dir
        if folder is None:
            return
        path = folder / LAST_GOOD
        values = self.app.config.recipe_values(changed_only=True)
        try:
            write_private(path, json.dumps(values))
        except OSError as exc:
            logger.warning("cannot keep the configuration in %s: %s", path, exc)


def read_last_good(folder: Path) -> dict[str, Any]:
    """The configuration kept by keep_last_good (recipe keys), or {} when there is none."""
    try:
        values = json.loads((folder / LAST_GOOD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}
