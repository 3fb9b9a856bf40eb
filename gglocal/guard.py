"""Guard of one lifecycle script, so that no script outlives the stand-in that supervises it.

Run by gglocal.process as ``python -I -S guard.py STAND_IN_PID COMMAND...`` (standard library only), as the
leader of the script's new process group. It asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``, which survives exec but not fork: it could not be set on the script's own processes),
runs COMMAND as its child, and exits with the child's status (or the signal that ended it).

A SIGTERM while the stand-in lives is ignored: it is the stand-in stopping the group, whose other processes
get it too; it is also what the kernel sends when the stand-in's thread that started the guard ends, the
process living on. Once the parent process is gone (even by SIGKILL), the guard stops its whole process
group: SIGTERM, then SIGKILL after ``GRACE_S``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
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


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write("usage: guard.py STAND_IN_PID COMMAND...\n")
        return 2
    stand_in, command = int(argv[1]), argv[2:]
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
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        sys.stderr.write(f"gglocal guard: prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}\n")
    if os.getppid() != stand_in:  # the stand-in died before the guard could ask to be told
        return 1
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"gglocal guard: cannot run {command[0]}: {exc}\n")
        os._exit(127)
    if os.getppid() != stand_in:
        on_sigterm(signal.SIGTERM, None)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # end the way the script ended, so the stand-in sees the same status
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
