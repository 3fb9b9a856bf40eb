"""No lifecycle process outlives its stand-in: a SIGKILLed ``python -m gglocal deploy`` takes its scripts'
process groups with it (the guard), and the next stand-in with the same root stops what escaped them (a
daemon that left its group) before it starts anything, leaving other programs alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gglocal.leftovers import MARKER, RECORD, ProcessRecord, stop_leftovers
from gglocal.process import ComponentLog, ScriptProcess
from tests.gglocal_builds import wait_until, write_component

pytestmark = pytest.mark.integration

TIMEOUT = 30.0
WORKER = r"""
import os, sys, time
from pathlib import Path
Path(sys.argv[1], f"worker-{os.getpid()}").touch()
time.sleep(300)
"""
DAEMON = r"""
import os, sys, time
from pathlib import Path
Path(sys.argv[1], f"daemon-{os.getpid()}").touch()
time.sleep(300)
"""


def write_build(build: Path, sync: Path) -> None:
    run = f"{sys.executable} -u {{artifacts:path}}/main.py {sync}"
    write_component(build, "com.example.Worker", {"Run": run}, script=WORKER)
    daemon = f"setsid {sys.executable} {{artifacts:path}}/main.py {sync} >/dev/null 2>&1 &"
    write_component(build, "com.example.Daemon", {"Startup": daemon}, script=DAEMON)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids(sync: Path, kind: str) -> set[int]:
    return {int(path.name.split("-")[1]) for path in sync.glob(f"{kind}-*")}


def deploy(build: Path, root: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "gglocal", "deploy", str(build), "--root", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def test_a_sigkilled_stand_in_leaves_nothing_running_and_the_next_starts_no_duplicates(
    tmp_path: Path,
) -> None:
    # before: after SIGKILL the component ran on unsupervised, and the next deploy started a second one
    build, root, sync = tmp_path / "build", tmp_path / "root", tmp_path / "sync"
    sync.mkdir()
    write_build(build, sync)
    first = deploy(build, root, tmp_path / "first.log")
    decoys: list[subprocess.Popen[bytes]] = []
    second: subprocess.Popen[bytes] | None = None
    try:
        assert wait_until(lambda: pids(sync, "worker") and pids(sync, "daemon"), TIMEOUT)
        (worker,), (daemon,) = pids(sync, "worker"), pids(sync, "daemon")
        first.send_signal(signal.SIGKILL)
        first.wait(TIMEOUT)

        assert wait_until(lambda: not alive(worker), 10.0), "the guard stops the script's group"
        assert alive(daemon), "a daemon that left its group escapes the guard"
        # programs that are not ours: one in a group the record names (a reused pgid), one of another stand-in
        decoys = [
            subprocess.Popen(["sleep", "300"], start_new_session=True),
            subprocess.Popen(["sleep", "300"], env={**os.environ, MARKER: "someone-else"}),
        ]
        record_path = root / "data" / RECORD
        record = json.loads(record_path.read_text())
        record["groups"].append(decoys[0].pid)
        record_path.write_text(json.dumps(record))

        second = deploy(build, root, tmp_path / "second.log")
        assert wait_until(lambda: len(pids(sync, "worker")) == 2 and len(pids(sync, "daemon")) == 2, TIMEOUT)
        assert not alive(daemon), "the next stand-in stopped the dead one's daemon before starting anything"
        assert [p for p in pids(sync, "worker") | pids(sync, "daemon") if alive(p)] == [
            p for p in pids(sync, "worker") | pids(sync, "daemon") if p not in (worker, daemon)
        ]
        assert all(decoy.poll() is None for decoy in decoys), "other programs are left alone"
        log = (root / "logs" / "greengrass.log").read_text()
        assert f"stopping {daemon} (" in log
        stop = subprocess.run(
            [sys.executable, "-m", "gglocal", "stop", "--root", str(root)], timeout=TIMEOUT, check=False
        )
        assert stop.returncode == 0 and second.wait(TIMEOUT) == 0
        # a clean stop also stops the daemon that left its group
        assert not [p for p in pids(sync, "worker") | pids(sync, "daemon") if alive(p)]
        assert not record_path.exists(), "a clean stop leaves no record"
    finally:
        for process in [first, *decoys, *([second] if second else [])]:
            if process.poll() is None:
                process.kill()
                process.wait(TIMEOUT)
        for pid in pids(sync, "worker") | pids(sync, "daemon"):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_script_started_from_a_thread_that_ends_keeps_running(tmp_path: Path) -> None:
    # PR_SET_PDEATHSIG fires when the spawning *thread* ends: the guard must tell that from the stand-in dying
    started: list[ScriptProcess] = []
    log = ComponentLog(tmp_path / "logs" / "c.log", "com.example.C")

    def spawn() -> None:
        started.append(
            ScriptProcess("sleep 30", step="Run", cwd=tmp_path, env=dict(os.environ), log=log, state_of=str)
        )

    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join(TIMEOUT)
    (script,) = started
    assert script.poll(1.5) is None, "the script outlives the thread that started it"
    assert script.terminate(2.0) is not None


def test_stop_leftovers_stops_only_the_marked_processes_of_a_dead_stand_in(tmp_path: Path) -> None:
    record = ProcessRecord(tmp_path)
    ours = subprocess.Popen(
        ["sleep", "300"], env={**os.environ, **record.environment}, start_new_session=True
    )
    theirs = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        record.add(ours.pid)
        record.add(theirs.pid)
        assert stop_leftovers(tmp_path) == [], "the record's stand-in (this process) is alive"
        assert ours.poll() is None and (tmp_path / RECORD).exists()
        dead = subprocess.Popen(["true"])
        dead.wait(TIMEOUT)
        data = json.loads((tmp_path / RECORD).read_text())
        (tmp_path / RECORD).write_text(json.dumps({**data, "pid": dead.pid}))
        assert stop_leftovers(tmp_path, grace_s=2.0) == [ours.pid]
        assert ours.wait(TIMEOUT) == -signal.SIGTERM
        assert theirs.poll() is None
        assert not (tmp_path / RECORD).exists()
    finally:
        for process in (ours, theirs):
            if process.poll() is None:
                process.kill()
                process.wait(TIMEOUT)


def test_the_pid_reported_is_the_script_s_own_in_a_group_the_guard_leads(tmp_path: Path) -> None:
    log = ComponentLog(tmp_path / "logs" / "c.log", "com.example.C")
    script = ScriptProcess(
        "echo $$ > pid; exec sleep 30", step="Run", cwd=tmp_path, env=dict(os.environ), log=log, state_of=str
    )
    try:
        assert wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), TIMEOUT)
        assert script.pid == int((tmp_path / "pid").read_text()) != script.popen.pid
        assert os.getpgid(script.pid) == script.popen.pid, "the guard leads the script's process group"
        os.kill(script.pid, signal.SIGKILL)  # the script dies: the guard reports how
        assert script.poll(TIMEOUT) == -signal.SIGKILL
        assert f"shell-runner-start. pid={script.pid}," in (tmp_path / "logs" / "c.log").read_text()
    finally:
        script.terminate(1.0)
