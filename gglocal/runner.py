"""One component's lifecycle: wait for dependencies, Install, then Run (or Startup), restart on errors.

States follow the nucleus: NEW -> INSTALLED -> STARTING -> RUNNING -> FINISHED, or ERRORED and restarted
until the core's :mod:`gglocal.errorlimit` makes it BROKEN (only a new deployment clears that). ``Run`` is
RUNNING once started and FINISHED on exit 0; ``Startup`` is STARTING until it exits 0 or the component
reports RUNNING. Over IPC, RUNNING is accepted only from STARTING (elsewhere: "Invalid reported state",
ignored, as both cores end up doing); ERRORED restarts the component on the Java nucleus and is ignored by
nucleus lite. ``request_restart`` stops and starts it again (Shutdown, then Run or Startup; Install first
when ``reinstall``), as a deployment does. ``stop()`` runs Shutdown (where the core runs it), then stops the
process group (SIGTERM, SIGKILL after the grace period).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gglocal.errorlimit import error_limit
from gglocal.nucleus import CLASSIC, NucleusProfile
from gglocal.process import ComponentLog
from gglocal.steps import ComponentSpec, StepRunner

logger = logging.getLogger(__name__)

POLL_S = 0.2
JOIN_TIMEOUT_S = 10.0
HOUR_S = 3600.0


class ComponentState(str, enum.Enum):
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


READY = (ComponentState.RUNNING, ComponentState.STOPPING, ComponentState.FINISHED)
"""A dependency in these states lets its dependents start (the Java nucleus's ``dependencyReady``)."""
ERRORABLE = (ComponentState.NEW, ComponentState.STARTING, ComponentState.RUNNING)


@dataclass(frozen=True)
class RestartPolicy:
    """Errors before BROKEN and the window they count in, delay before a restart, SIGTERM->SIGKILL grace."""

    max_errors: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    grace_s: float = 5.0
    error_window_s: float = HOUR_S

    def delay(self, errors: int) -> float:
        return float(min(self.base_delay_s * 2 ** max(errors - 1, 0), self.max_delay_s))


@dataclass(frozen=True)
class _Ended:
    """How a stage ended: ``done`` (FINISHED, BROKEN or stopping: the thread ends), ``failed`` (``step``
    failed: an error), or ``restart`` (asked to; Install first when ``reinstall``)."""

    kind: str
    step: str = ""
    reinstall: bool = False


DONE = _Ended("done")


class ComponentRunner:
    """Runs one component on its own thread; thread-safe state queries, requests and stop()."""

    def __init__(
        self,
        spec: ComponentSpec,
        *,
        policy: RestartPolicy,
        nucleus: NucleusProfile = CLASSIC,
        dependencies: Sequence[ComponentRunner] = (),
        hard_dependencies: Callable[[], Sequence[ComponentRunner]] = lambda: (),
        echo: bool = False,
        on_state: Callable[[str, ComponentState], None] | None = None,
        installed: bool = False,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.nucleus = nucleus
        self.errors_total = 0
        self.restarts = 0
        self.install_runs = 0
        self._error_times: list[float] = []
        self._limit = error_limit(nucleus.error_limit, policy.max_errors, policy.error_window_s)
        self._deps = tuple(dependencies)  # waited for at the first start
        self._hard_deps = hard_dependencies  # the current runners of the HARD ones, waited for at restarts
        self._log = ComponentLog(spec.log_path, spec.name, echo=echo)
        self._on_state = on_state
        self._state = ComponentState.NEW
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._request: str | None = None  # "errored", "restart" or "reinstall"
        self._installed = installed  # already installed: start at Run (a restart of a FINISHED component)
        self._steps = StepRunner(spec, self._log, lambda: str(self.state), policy.grace_s, self._stopping)
        self._thread = threading.Thread(target=self._main, name=f"gglocal-{spec.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        """Whether the lifecycle thread still runs (it ends at FINISHED, BROKEN or stop)."""
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called: the core itself is ending this runner."""
        return self._stopping.is_set()

    @property
    def state(self) -> ComponentState:
        with self._cond:
            return self._state

    @property
    def errors(self) -> int:
        """Errors within the last hour."""
        now = time.monotonic()
        with self._cond:
            return sum(1 for t in self._error_times if now - t < HOUR_S)

    def wait_for(self, states: Iterable[ComponentState], timeout: float) -> bool:
        wanted = set(states)
        with self._cond:
            return self._cond.wait_for(lambda: self._state in wanted, timeout)

    def _set_state(self, state: ComponentState) -> None:
        with self._cond:
            if self._state == state:
                return
            previous, self._state = self._state, state
            if state != ComponentState.ERRORED:
                self._limit.left(str(previous))
            self._cond.notify_all()
        logger.info("%s: %s -> %s", self.name, previous, state)
        if self._on_state is not None:
            self._on_state(self.name, state)

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.spec.work_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def report_state(self, state: str) -> None:
        """UpdateState over IPC, as the profile's core takes it (see the module docstring)."""
        current = self.state
        if state == "RUNNING" and current == ComponentState.STARTING:
            self._set_state(ComponentState.RUNNING)
        elif state == "ERRORED" and not self.nucleus.errored_restarts:
            logger.info("%s: UpdateState ERRORED ignored, as nucleus lite does (no restart)", self.name)
        elif state == "ERRORED" and current in ERRORABLE:
            self._ask("errored")
        else:
            logger.warning(
                "%s: UpdateState %s in state %s: Invalid reported state; ignored", self.name, state, current
            )

    def reset_limits(self) -> None:
        """Forget the errors counted towards BROKEN (a deployment's ``systemctl reset-failed`` on lite)."""
        with self._cond:
            self._limit.reset()

    def request_restart(self, *, reinstall: bool = False) -> None:
        """Stop and start the component again (with Install first when ``reinstall``)."""
        self._ask("reinstall" if reinstall else "restart")

    def _ask(self, request: str) -> None:
        with self._cond:
            if self._request != "reinstall":
                self._request = request
        self._wake.set()

    def _take_request(self) -> str | None:
        with self._cond:
            request, self._request = self._request, None
        self._wake.clear()
        return request

    def stop(self) -> None:
        """Run Shutdown (where the core runs it), stop the script's process group, wait for the thread."""
        proc = self._steps.stop()
        self._wake.set()
        if self.state in (ComponentState.STARTING, ComponentState.RUNNING):
            self._set_state(ComponentState.STOPPING)
            self._shutdown()
        if proc is not None:
            proc.terminate(self.policy.grace_s)
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT_S)
        if self.state != ComponentState.BROKEN:
            self._set_state(ComponentState.FINISHED)

    def _shutdown(self) -> None:
        shutdown = self.spec.lifecycle.step("Shutdown")
        if shutdown is not None and self.nucleus.runs_shutdown:
            self._steps.run_to_end("Shutdown", shutdown, force=True)

    # -- main loop -------------------------------------------------------------------------------
    def _wait_for_dependencies(self, *, restart: bool = False) -> bool:
        """Until the dependencies are ready (False when stopped meanwhile): every one at the first start;
        at a restart the HARD ones, by their current runners (a redeployment may have replaced them)."""
        while True:
            deps = self._hard_deps() if restart else self._deps
            waiting = [d for d in deps if d.state not in READY]
            if not waiting:
                return True
            waiting[0].wait_for(READY, POLL_S)
            if self._stopping.is_set():
                return False

    def _main(self) -> None:
        try:
            self._lifecycle()
        except Exception:  # one component's unexpected failure must not go unnoticed nor kill the core
            logger.exception("%s: lifecycle failed unexpectedly; marking it BROKEN", self.name)
            self._set_state(ComponentState.BROKEN)

    def _lifecycle(self) -> None:
        if not self._wait_for_dependencies():
            return
        install = not self._installed
        while not self._stopping.is_set():
            ended = self._install() if install else None
            if ended is None:
                install = False
                ended = self._run_main()
            if ended.kind == "done":
                return
            if ended.kind == "restart":
                self.restarts += 1
                install = ended.reinstall
                if not self._wait_for_dependencies(restart=True):
                    return
                continue
            if self._fail(ended.step) or not self._wait_for_dependencies(restart=True):
                return
            install = ended.step == "Install"

    def _install(self) -> _Ended | None:
        """Install (None when it succeeded); the component is NEW while it runs, as in the nucleus."""
        self._set_state(ComponentState.NEW)
        step = self.spec.lifecycle.step("Install")
        if step is not None:
            if not self._allowed_start("install"):
                return DONE
            self.install_runs += 1
            code = self._steps.run_to_end("Install", step)
            if self._stopping.is_set():
                return DONE
            if code != 0:
                return _Ended("failed", "Install")
        self._set_state(ComponentState.INSTALLED)
        return None

    def _allowed_start(self, unit: str) -> bool:
        with self._cond:
            allowed = self._limit.start(unit, time.monotonic())
        if allowed:
            return True
        logger.error("%s: started too often within the window (start limit); BROKEN", self.name)
        self._set_state(ComponentState.BROKEN)
        return False

    def _run_main(self) -> _Ended:
        """Run or Startup until it ends, fails, is asked to restart, or the component stops."""
        lifecycle = self.spec.lifecycle
        name = "Startup" if lifecycle.step("Startup") else "Run" if lifecycle.step("Run") else None
        if name is None:
            self._set_state(ComponentState.FINISHED)
            return DONE
        if not self._allowed_start("run"):
            return DONE
        with self._cond:  # a restart or ERRORED asked for before this start is moot now
            if self._request in ("errored", "restart"):
                self._request = None
                self._wake.clear()
        step = lifecycle.steps[name]
        self._set_state(ComponentState.RUNNING if name == "Run" else ComponentState.STARTING)
        proc = self._steps.spawn(name)
        if proc is None:
            if self._stopping.is_set():
                return DONE
            self._set_state(ComponentState.RUNNING if name == "Startup" else ComponentState.FINISHED)
            return self._wait_for_request() if name == "Startup" else DONE
        deadline = None if step.timeout is None else time.monotonic() + step.timeout
        while True:
            code = proc.poll(POLL_S)
            if self._stopping.is_set():
                return DONE
            if code is not None:
                logger.info("%s: %s exited with %d", self.name, name, code)
            if code == 0 and name == "Run":
                self._set_state(ComponentState.FINISHED)
                return DONE
            if code == 0:
                self._set_state(ComponentState.RUNNING)
                return self._wait_for_request()
            if code is not None or (deadline is not None and time.monotonic() >= deadline):
                if code is None:
                    logger.error("%s: %s timed out after %.0f s", self.name, name, step.timeout)
                    proc.terminate(self.policy.grace_s)
                return _Ended("failed", name)
            if self._wake.is_set():
                return self._handle_request()

    def _wait_for_request(self) -> _Ended:
        """A started Startup component: RUNNING until a request or stop."""
        while not self._stopping.is_set():
            if self._wake.wait(POLL_S) and not self._stopping.is_set():
                return self._handle_request()
        return DONE

    def _handle_request(self) -> _Ended:
        request = self._take_request()
        if request == "errored":
            self._steps.terminate_current()
            return _Ended("failed", "UpdateState ERRORED")
        reinstall = request == "reinstall"
        logger.info("%s: restarting%s", self.name, " (Install first)" if reinstall else "")
        self._set_state(ComponentState.STOPPING)
        self._shutdown()
        self._steps.terminate_current()
        self._set_state(ComponentState.NEW if reinstall else ComponentState.INSTALLED)
        return _Ended("restart", reinstall=reinstall)

    def _fail(self, what: str) -> bool:
        """Count an error; True when the component is now BROKEN (or stopping) and the loop must end."""
        if self._stopping.is_set():
            return True
        where = str(self.state)
        now = time.monotonic()
        with self._cond:
            self.errors_total += 1
            self._error_times.append(now)
            broken = self._limit.error(where, now)
        self._set_state(ComponentState.ERRORED)
        if broken:
            logger.error("%s: %s failed; %d errors in %s -> BROKEN", self.name, what, self.errors, where)
            self._set_state(ComponentState.BROKEN)
            return True
        recover = self.spec.lifecycle.step("Recover")
        if recover is not None:
            self._steps.run_to_end("Recover", recover)
        delay = self.policy.delay(self.errors)
        logger.warning("%s: %s failed (error %d); restarting in %.1f s", self.name, what, self.errors, delay)
        self.restarts += 1
        return self._stopping.wait(delay)
