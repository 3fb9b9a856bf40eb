"""Guard of one lifecycle script, so that no script outlives the stand-in that supervises it.

Run by gglocal.process as ``python -I -S guard.py STAND_IN_PID REPORT_FD COMMAND...`` (standard library
only), as the leader of the script's new process group. It asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``, which survives exec but not fork: it could not be set on the script's own processes),
runs COMMAND as its child, writes the child's pid to REPORT_FD (the pid the stand-in reports as the
script's), and exits with the child's status (or the signal that ended it). As a child subreaper it also
reaps what the script's processes leave orphaned while it runs.

A SIGTERM while the stand-in lives is ignored: it is the stand-in stopping the group, whose other processes
get it too; it is also what the kernel sends when the stand-in's thread that started the guard ends, the
process living on. Once the parent process is gone (even by SIGKILL), the guard stops its whole process
group: SIGTERM, then SIGKILL after ``GRACE_S``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 3.0
POLL_S = 0.05


def _stop_group(child: int) -> None:
    os.killpg(0, signal.SIGTERM)  # the guard's handler ignores its own copy
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            if os.waitpid(child, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            break
        time.sleep(POLL_S)
    os.killpg(0, signal.SIGKILL)  # whatever is left, the guard included


def _report(fd: int, child: int) -> None:
    if fd < 0:
        return
    with contextlib.suppress(OSError):  # the stand-in stopped listening: it reports the guard's pid
        os.write(fd, f"{child}\n".encode())
    os.close(fd)


def _wait_for(child: int) -> int:
    """Reap orphans handed to the guard until ``child`` ends; its wait status."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            return status


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        sys.stderr.write("usage: guard.py STAND_IN_PID REPORT_FD COMMAND...\n")
        return 2
    stand_in, report_fd, command = int(argv[1]), int(argv[2]), argv[3:]
    child = 0
    orphaned = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal orphaned
        if orphaned or os.getppid() == stand_in:
            return
        orphaned = True
        if child:
            _stop_group(child)
        os._exit(1)

    signal.signal(signal.SIGTERM, on_sigterm)  # before asking for it, so it can never kill the guard
    libc = ctypes.CDLL(None, use_errno=True)
    for option in (PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER):
        value = int(signal.SIGTERM) if option == PR_SET_PDEATHSIG else 1
        if libc.prctl(option, value, 0, 0, 0) != 0:
            sys.stderr.write(f"gglocal guard: prctl({option}) failed: errno {ctypes.get_errno()}\n")
    if os.getppid() != stand_in:  # the stand-in died before the guard could ask to be told
        return 1
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if report_fd >= 0:
            os.close(report_fd)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"gglocal guard: cannot run {command[0]}: {exc}\n")
        os._exit(127)
    _report(report_fd, child)
    if os.getppid() != stand_in:
        on_sigterm(signal.SIGTERM, None)
    code = os.waitstatus_to_exitcode(_wait_for(child))
    if code < 0:  # end the way the script ended, so the stand-in sees the same status
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
