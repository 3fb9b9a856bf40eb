"""Lifecycle processes a dead stand-in left behind: recorded while it runs, stopped when the next one starts.

A running stand-in keeps ``<root>/data/processes.json`` (0600): its instance id, its pid, and the process
groups of the lifecycle scripts it started. Every script runs with the instance id in its environment
(``GGLOCAL_INSTANCE``), and so do all the processes it starts. The guard (gglocal.guard) stops a script's
group when the stand-in dies; what escapes it (a daemon that left its group, or a stand-in killed before
the guard was told) is found when the next stand-in with the same root starts: :func:`stop_leftovers`
stops every process whose ``/proc/<pid>/environ`` carries the dead instance's id, in the recorded groups or
not. A pid or group reused by another program does not carry it and is left alone. A clean stop
(:meth:`ProcessRecord.close`) stops this instance's escapees the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gglocal.private import write_private_text

logger = logging.getLogger(__name__)

MARKER = "GGLOCAL_INSTANCE"
RECORD = "processes.json"
GRACE_S = 3.0
POLL_S = 0.05


class ProcessRecord:
    """The record of one running stand-in (see the module docstring); thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.instance = secrets.token_hex(8)
        self.path = folder / RECORD
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self._write()

    @property
    def environment(self) -> dict[str, str]:
        """What every lifecycle script's environment gets, so its processes can be told apart."""
        return {MARKER: self.instance}

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            self._write()

    def remove(self, pgid: int) -> None:
        with self._lock:
            if pgid in self._groups:
                self._groups.discard(pgid)
                self._write()

    def close(self, grace_s: float = GRACE_S) -> None:
        """A clean stop, after the components were stopped: stops what escaped their groups (a daemon that
        left its group), then removes the record."""
        escaped = _carrying(self.instance)
        if escaped:
            logger.warning(
                "stopping %d processes that left their lifecycle script's process group: %s",
                len(escaped),
                ", ".join(f"{pid} ({_command(pid)})" for pid in escaped),
            )
            _stop(self.instance, escaped, grace_s)
        with self._lock:
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        record = {"instance": self.instance, "pid": os.getpid(), "groups": sorted(self._groups)}
        write_private_text(self.path, json.dumps(record) + "\n")


def stop_leftovers(folder: Path, grace_s: float = GRACE_S) -> list[int]:
    """Stop what a dead stand-in's record names (SIGTERM, SIGKILL after ``grace_s``); the pids stopped.

    Nothing is done when there is no record, or its stand-in still runs."""
    record = _read(folder / RECORD)
    if record is None:
        return []
    owner, instance = int(record.get("pid", 0)), str(record.get("instance", ""))
    if _alive(owner):  # this process included: another Core in it may use the root
        logger.warning("processes of stand-in pid %d (still running) are not touched", owner)
        return []
    victims = _carrying(instance) if instance else []
    if victims:
        logger.warning(
            "a stand-in that died (pid %d) left %d lifecycle processes running (groups %s): stopping %s",
            owner,
            len(victims),
            record.get("groups"),
            ", ".join(f"{pid} ({_command(pid)})" for pid in victims),
        )
        _stop(instance, victims, grace_s)
    (folder / RECORD).unlink(missing_ok=True)
    return victims


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        logger.warning("%s is not valid JSON (%s); ignored", path, exc)
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _other_processes() -> Iterator[Path]:
    """``/proc/<pid>`` of every process but this one."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            yield entry


def _carrying(instance: str) -> list[int]:
    """Processes (other than this one) whose environment holds ``GGLOCAL_INSTANCE=<instance>``."""
    wanted = f"{MARKER}={instance}".encode()
    found = []
    for entry in _other_processes():
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in _other_processes():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp
            members.append(int(entry.name))
    return members


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120]


def _stop(instance: str, pids: list[int], grace_s: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _carrying(instance):
        time.sleep(POLL_S)
    for pid in _carrying(instance):  # also what they started meanwhile
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _carrying(instance):
        time.sleep(POLL_S)
