"""One component's lifecycle: wait for dependencies, Install once, then Run (or Startup), restart on errors.

States follow the nucleus: NEW -> INSTALLED -> STARTING -> RUNNING -> FINISHED, or ERRORED, restarted with
exponential backoff until ``max_errors`` errors make it BROKEN. ``Run`` is RUNNING once started and FINISHED
on exit 0; ``Startup`` is STARTING until it exits 0 (or the component reports RUNNING over IPC). UpdateState
ERRORED over IPC counts as an error and restarts the component. ``stop()`` runs Shutdown, then stops the
process group (SIGTERM, SIGKILL after the grace period).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from gglocal.leftovers import ProcessRecord
from gglocal.process import ComponentLog, ScriptProcess
from gglocal.recipe import Lifecycle, Step

logger = logging.getLogger(__name__)

POLL_S = 0.2
JOIN_TIMEOUT_S = 10.0


class ComponentState(str, Enum):
    NEW = "NEW"
    INSTALLED = "INSTALLED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    FINISHED = "FINISHED"
    ERRORED = "ERRORED"
    BROKEN = "BROKEN"

    def __str__(self) -> str:
        return self.value


STARTED = (ComponentState.RUNNING, ComponentState.FINISHED)


@dataclass(frozen=True)
class RestartPolicy:
    """Errors before BROKEN, backoff between restarts, and SIGTERM->SIGKILL grace on stop."""

    max_errors: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    grace_s: float = 5.0

    def delay(self, errors: int) -> float:
        return float(min(self.base_delay_s * 2 ** max(errors - 1, 0), self.max_delay_s))


@dataclass(frozen=True)
class ComponentSpec:
    """Everything a runner needs; ``expand`` interpolates recipe variables with the current configuration."""

    name: str
    version: str
    lifecycle: Lifecycle
    work_dir: Path
    log_path: Path
    env: Mapping[str, str]
    expand: Callable[[str], str]
    processes: ProcessRecord | None = None  # where the stand-in notes the process groups it starts


class ComponentRunner:
    """Runs one component on its own thread; thread-safe state queries and stop()."""

    def __init__(
        self,
        spec: ComponentSpec,
        *,
        policy: RestartPolicy,
        dependencies: Sequence[ComponentRunner] = (),
        echo: bool = False,
        on_state: Callable[[str, ComponentState], None] | None = None,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.errors = 0
        self.install_runs = 0
        self._deps = tuple(dependencies)
        self._log = ComponentLog(spec.log_path, spec.name, echo=echo)
        self._on_state = on_state
        self._state = ComponentState.NEW
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._reported_error = threading.Event()
        self._proc_lock = threading.Lock()
        self._proc: ScriptProcess | None = None
        self._thread = threading.Thread(target=self._main, name=f"gglocal-{spec.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> ComponentState:
        with self._cond:
            return self._state

    def wait_for(self, states: Iterable[ComponentState], timeout: float) -> bool:
        wanted = set(states)
        with self._cond:
            return self._cond.wait_for(lambda: self._state in wanted, timeout)

    def _set_state(self, state: ComponentState) -> None:
        with self._cond:
            if self._state == state:
                return
            previous, self._state = self._state, state
            self._cond.notify_all()
        logger.info("%s: %s -> %s", self.name, previous, state)
        if self._on_state is not None:
            self._on_state(self.name, state)

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.spec.work_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def report_state(self, state: str) -> None:
        """UpdateState over IPC: RUNNING marks a starting component running; ERRORED triggers a restart."""
        if state == "RUNNING" and self.state == ComponentState.STARTING:
            self._set_state(ComponentState.RUNNING)
        elif state == "ERRORED":
            self._reported_error.set()

    def stop(self) -> None:
        """Run Shutdown (if any), stop the running script's process group, and wait for the thread."""
        with self._proc_lock:
            self._stopping.set()
            proc = self._proc
        was = self.state
        if was in (ComponentState.STARTING, ComponentState.RUNNING):
            self._set_state(ComponentState.STOPPING)
            shutdown = self.spec.lifecycle.step("Shutdown")
            if shutdown is not None:
                self._run_to_end("Shutdown", shutdown, force=True)
        if proc is not None:
            proc.terminate(self.policy.grace_s)
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT_S)
        if self.state != ComponentState.BROKEN:
            self._set_state(ComponentState.FINISHED)

    # -- running scripts -------------------------------------------------------------------------
    def _skip(self, step: Step, env: Mapping[str, str]) -> bool:
        if not step.skipif:
            return False
        kind, _, arg = self.spec.expand(step.skipif).strip().partition(" ")
        arg = arg.strip()
        if kind.lower() == "onpath":
            return shutil.which(arg, path=env.get("PATH")) is not None
        if kind.lower() == "exists":
            return os.path.exists(arg)
        logger.warning("%s: unknown Skipif %r; running the step", self.name, step.skipif)
        return False

    def _spawn(self, name: str, step: Step, *, force: bool = False) -> ScriptProcess | None:
        expand = self.spec.expand
        env = dict(self.spec.env)
        env.update({k: expand(v) for k, v in self.spec.lifecycle.setenv.items()})
        env.update({k: expand(v) for k, v in step.setenv.items()})
        if self._skip(step, env):
            logger.info("%s: %s skipped (Skipif %s)", self.name, name, step.skipif)
            return None
        with self._proc_lock:
            if self._stopping.is_set() and not force:
                return None
            self.spec.work_dir.mkdir(parents=True, exist_ok=True)
            proc = ScriptProcess(
                expand(step.script),
                step=name,
                cwd=self.spec.work_dir,
                env=env,
                log=self._log,
                state_of=lambda: str(self.state),
                processes=self.spec.processes,
            )
            if not force:
                self._proc = proc
        logger.info("%s: %s started (pid %d)", self.name, name, proc.pid)
        return proc

    def _run_to_end(self, name: str, step: Step, *, force: bool = False) -> int | None:
        """Run a step with a timeout; its exit code (0 when skipped), None when stopped or timed out."""
        proc = self._spawn(name, step, force=force)
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
                proc.terminate(self.policy.grace_s)
                return None
            if self._stopping.is_set() and not force:
                return None

    # -- main loop -------------------------------------------------------------------------------
    def _wait_for_dependencies(self) -> bool:
        for dep in self._deps:
            while not dep.wait_for(STARTED, POLL_S):
                if self._stopping.is_set():
                    return False
        return True

    def _main(self) -> None:
        try:
            self._lifecycle()
        except Exception:  # one component's unexpected failure must not go unnoticed nor kill the core
            logger.exception("%s: lifecycle failed unexpectedly; marking it BROKEN", self.name)
            self._set_state(ComponentState.BROKEN)

    def _lifecycle(self) -> None:
        if not self._wait_for_dependencies():
            return
        installed = False
        while not self._stopping.is_set():
            self._reported_error.clear()
            if not installed:
                install = self.spec.lifecycle.step("Install")
                if install is not None:
                    self.install_runs += 1
                    if self._run_to_end("Install", install) != 0:
                        if self._fail("Install") or self._stopping.is_set():
                            return
                        continue
                installed = True
                self._set_state(ComponentState.INSTALLED)
            outcome = self._run_main()
            if outcome is None:
                return
            if self._fail(outcome):
                return

    def _run_main(self) -> str | None:
        """Run or Startup; None when done (FINISHED or stopping), else the name of the failed step."""
        lifecycle = self.spec.lifecycle
        name = "Run" if lifecycle.step("Run") else "Startup" if lifecycle.step("Startup") else None
        if name is None:
            self._set_state(ComponentState.FINISHED)
            return None
        step = lifecycle.steps[name]
        self._set_state(ComponentState.RUNNING if name == "Run" else ComponentState.STARTING)
        if name == "Startup":
            code = self._run_to_end(name, step)
            if self._stopping.is_set():
                return None
            if code != 0:
                return name
            self._set_state(ComponentState.RUNNING)
            while not self._stopping.wait(POLL_S):
                if self._reported_error.is_set():
                    self._terminate_current()
                    return "UpdateState ERRORED"
            return None
        proc = self._spawn(name, step)
        if proc is None:
            if not self._stopping.is_set():
                self._set_state(ComponentState.FINISHED)
            return None
        while True:
            code = proc.poll(POLL_S)
            if self._stopping.is_set():
                return None
            if code == 0:
                self._set_state(ComponentState.FINISHED)
                return None
            if code is not None:
                logger.warning("%s: Run exited with %d", self.name, code)
                return name
            if self._reported_error.is_set():
                proc.terminate(self.policy.grace_s)
                return "UpdateState ERRORED"

    def _terminate_current(self) -> None:
        """Stop what the last script left running in its process group (e.g. a Startup's daemon)."""
        with self._proc_lock:
            proc = self._proc
        if proc is not None:
            proc.terminate(self.policy.grace_s)

    def _fail(self, what: str) -> bool:
        """Count an error; True when the component is now BROKEN (or stopping) and the loop must end."""
        if self._stopping.is_set():
            return True
        self.errors += 1
        self._set_state(ComponentState.ERRORED)
        if self.errors >= self.policy.max_errors:
            logger.error("%s: %s failed; %d errors -> BROKEN", self.name, what, self.errors)
            self._set_state(ComponentState.BROKEN)
            return True
        recover = self.spec.lifecycle.step("Recover")
        if recover is not None:
            self._run_to_end("Recover", recover)
        delay = self.policy.delay(self.errors)
        logger.warning("%s: %s failed (error %d); restarting in %.1f s", self.name, what, self.errors, delay)
        return self._stopping.wait(delay)
