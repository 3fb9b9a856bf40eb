"""Lifecycle script processes: spawn ``sh -c`` in its own process group, copy output to the component log,
and stop a whole process group (SIGTERM, then SIGKILL after a grace period).

On Linux the group is led by a guard (gglocal.guard) that stops the group should the stand-in die, and the
group is noted in the stand-in's ProcessRecord (gglocal.leftovers), whose instance id every process of the
script carries in its environment, so that the next stand-in can stop whatever escaped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from gglocal.leftovers import ProcessRecord, group_members
from gglocal.private import append_private, private_dir

logger = logging.getLogger(__name__)

PUMP_JOIN_S = 2.0
GUARD = Path(__file__).with_name("guard.py")
GUARDED = sys.platform.startswith("linux")  # the guard needs PR_SET_PDEATHSIG
REPORT_TIMEOUT_S = 10.0
GUARD_REAP_S = 2.0


def _spawn(script: str, **popen: Any) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``sh -c script`` in a new process group, led by the guard where there is one; the Popen (of
    the group leader) and the pid of the script itself, as the guard reports it."""
    if not GUARDED:
        process = subprocess.Popen(["sh", "-c", script], start_new_session=True, **popen)
        return process, process.pid
    read_fd, write_fd = os.pipe()
    try:
        command = [
            sys.executable,
            "-I",
            "-S",
            str(GUARD),
            str(os.getpid()),
            str(write_fd),
            "sh",
            "-c",
            script,
        ]
        process = subprocess.Popen(command, start_new_session=True, pass_fds=(write_fd,), **popen)
    finally:
        os.close(write_fd)
    try:
        return process, _read_pid(read_fd) or process.pid
    finally:
        os.close(read_fd)


def _read_pid(fd: int) -> int | None:
    """One ``<pid>\n`` line from ``fd``, waiting at most REPORT_TIMEOUT_S; None when none came."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(int(remaining * 1000) + 1):
            break
        chunk = os.read(fd, 32)
        if not chunk:
            break
        data += chunk
    try:
        return int(data)
    except ValueError:
        logger.warning("the lifecycle guard reported no pid (%r); using its own", data)
        return None


class ComponentLog:
    """``<root>/logs/<name>.log`` in the nucleus' line format, owner-only; optionally echoed to our stderr."""

    def __init__(self, path: Path, component: str, *, echo: bool = False) -> None:
        private_dir(path.parent)
        self.path = path
        self.component = component
        self.echo = echo
        self._lock = threading.Lock()

    def write(self, stream: str, line: str, *, step: str, state: str) -> None:
        """One line of a script's stdout (INFO) or stderr (WARN)."""
        level = "INFO" if stream == "stdout" else "WARN"
        self._append(level, "Copier", f"{stream}. {line}", step, state, echo=True)

    def event(self, text: str, *, step: str, state: str) -> None:
        """A lifecycle event (script started or exited), as the nucleus notes it in the component log."""
        self._append("INFO", "gglocal", text, step, state, echo=False)

    def _append(self, level: str, thread: str, message: str, step: str, state: str, *, echo: bool) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        text = (
            f"{stamp} [{level}] ({thread}) {self.component}: {message}. "
            f"{{scriptName=services.{self.component}.lifecycle.{step}, serviceName={self.component}, "
            f"currentState={state}}}\n"
        )
        line = message.split(". ", 1)[-1]
        with self._lock:
            with append_private(self.path) as handle:
                handle.write(text)
            if self.echo and echo:
                sys.stderr.write(f"[{self.component}] {line}\n")
                sys.stderr.flush()


class ScriptProcess:
    """One running lifecycle script with its output pumps."""

    def __init__(
        self,
        script: str,
        *,
        step: str,
        cwd: Path,
        env: Mapping[str, str],
        log: ComponentLog,
        state_of: Callable[[], str],
        processes: ProcessRecord | None = None,
    ) -> None:
        self.step = step
        self._log = log
        self._state_of = state_of
        self._processes = processes
        self._exit_logged = False
        self.popen, self._pid = _spawn(
            script,
            cwd=str(cwd),
            env={**env, **(processes.environment if processes else {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._pumps = [
            threading.Thread(
                target=self._pump, args=(pipe, name), daemon=True, name=f"{log.component}-{name}"
            )
            for pipe, name in ((self.popen.stdout, "stdout"), (self.popen.stderr, "stderr"))
        ]
        for pump in self._pumps:
            pump.start()
        if processes is not None:
            processes.add(self.popen.pid)
        log.event(f"shell-runner-start. pid={self._pid}, command={script!r}", step=step, state=state_of())

    @property
    def pid(self) -> int:
        """The script's own process (``sh``, or what it execs); its group is led by the guard."""
        return self._pid

    def _pump(self, pipe: IO[bytes] | None, name: str) -> None:
        if pipe is None:
            return
        with pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self._log.write(name, line, step=self.step, state=str(self._state_of()))

    def poll(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s; the exit code, or None while it runs."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for pump in self._pumps:
            pump.join(PUMP_JOIN_S)
        if not self._exit_logged:
            self._exit_logged = True
            self._log.event(f"shell-runner-exit. exitCode={code}", step=self.step, state=self._state_of())
            if not self._group_alive():
                self._forget_group()
        return code

    def terminate(self, grace_s: float) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; returns the exit code."""
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            code = self.poll(0.05)
            if code is not None:
                self._signal_group(signal.SIGKILL)  # leftovers in the group
                self._forget_group()
                return code
        logger.warning(
            "%s %s did not stop within %.1f s; killing it", self._log.component, self.step, grace_s
        )
        self._kill_group()
        code = self.poll(grace_s)
        self._forget_group()
        return code

    def _kill_group(self) -> None:
        """SIGKILL the process group; the guard last, so that it reaps the script and exits as it did."""
        if GUARDED:
            for pid in group_members(self.popen.pid):
                if pid != self.popen.pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(GUARD_REAP_S)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def _group_alive(self) -> bool:
        """Whether anything is left in the script's process group (e.g. a daemon a Startup started)."""
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _forget_group(self) -> None:
        if self._processes is not None:
            self._processes.remove(self.popen.pid)
