"""Running one component's lifecycle steps as processes: Skipif, spawn with the rendered script and
environment, run to the end under the step's timeout, and stop what is running.

``StepRunner`` knows nothing of states; ``gglocal.runner`` decides which step runs when.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gglocal.leftovers import ProcessRecord
from gglocal.lifecycle import Lifecycle, Step
from gglocal.process import ComponentLog, ScriptProcess
from gglocal.render import RenderedStep

logger = logging.getLogger(__name__)

POLL_S = 0.2


@dataclass(frozen=True)
class ComponentSpec:
    """Everything a runner needs; ``render`` gives a step (by name) as the core runs it."""

    name: str
    version: str
    lifecycle: Lifecycle
    work_dir: Path
    log_path: Path
    env: Mapping[str, str]
    render: Callable[[str], RenderedStep]
    processes: ProcessRecord | None = None  # where the stand-in notes the process groups it starts


def skips(skipif: str | None, env: Mapping[str, str]) -> bool:
    """Whether a step's (rendered) Skipif holds: ``onpath <exe>`` or ``exists <file>``."""
    if not skipif:
        return False
    kind, _, arg = skipif.strip().partition(" ")
    arg = arg.strip()
    if kind.lower() == "onpath":
        return shutil.which(arg, path=env.get("PATH")) is not None
    if kind.lower() == "exists":
        return os.path.exists(arg)
    logger.warning("unknown Skipif %r; running the step", skipif)
    return False


class StepRunner:
    """The processes of one component; ``stopping`` is the runner's stop event."""

    def __init__(
        self,
        spec: ComponentSpec,
        log: ComponentLog,
        state_of: Callable[[], str],
        grace_s: float,
        stopping: threading.Event,
    ) -> None:
        self.spec = spec
        self._log = log
        self._state_of = state_of
        self._grace_s = grace_s
        self._stopping = stopping
        self._lock = threading.Lock()
        self._proc: ScriptProcess | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def stop(self) -> ScriptProcess | None:
        """Set the stop event (no new step starts after it) and return what runs now."""
        with self._lock:
            self._stopping.set()
            return self._proc

    def spawn(self, name: str, *, force: bool = False) -> ScriptProcess | None:
        """Start step ``name``; None when skipped, or stopping (unless ``force``: Shutdown)."""
        rendered = self.spec.render(name)
        env = {**self.spec.env, **rendered.setenv}
        if skips(rendered.skipif, env):
            logger.info("%s: %s skipped (Skipif %s)", self.name, name, rendered.skipif)
            return None
        with self._lock:
            if self._stopping.is_set() and not force:
                return None
            self.spec.work_dir.mkdir(parents=True, exist_ok=True)
            proc = ScriptProcess(
                rendered.script,
                step=name,
                cwd=self.spec.work_dir,
                env=env,
                log=self._log,
                state_of=self._state_of,
                processes=self.spec.processes,
            )
            if not force:
                self._proc = proc
        logger.info("%s: %s started (pid %d)", self.name, name, proc.pid)
        return proc

    def run_to_end(self, name: str, step: Step, *, force: bool = False) -> int | None:
        """Run a step with its timeout; its exit code (0 when skipped), None when stopped or timed out."""
        proc = self.spawn(name, force=force)
        if proc is None:
            return None if self._stopping.is_set() and not force else 0
        deadline = None if step.timeout is None else time.monotonic() + step.timeout
        while True:
            code = proc.poll(POLL_S)
            if code is not None:
                logger.info("%s: %s exited with %d", self.name, name, code)
                return code
            if deadline is not None and time.monotonic() >= deadline:
                logger.error("%s: %s timed out after %.0f s", self.name, name, step.timeout)
                proc.terminate(self._grace_s)
                return None
            if self._stopping.is_set() and not force:
                return None

    def terminate_current(self) -> None:
        """Stop what the last script left running in its process group (e.g. a Startup's daemon)."""
        with self._lock:
            proc = self._proc
        if proc is not None:
            proc.terminate(self._grace_s)
