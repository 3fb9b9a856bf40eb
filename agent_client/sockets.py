"""Unix socket paths shared by the agent, the component and gglocal: one place that decides whether a path may
be bound (a socket left by a dead server is removed; a live one, another user's, or a non-socket is refused),
whether a socket folder is safe to serve in, and whether the process serving a socket can be trusted.

Trust model. Whoever can create or replace the socket file can impersonate the agent, so both ends check:
- the folder holding the socket and every folder above it belong to a trusted user (root, our own uid, the
  Greengrass core's user, plus any the caller adds), and no other user can write them, except a sticky
  folder such as /tmp: there other users cannot remove or rename our entries, but they can take a name that
  is free (while the agent is down), which is why a socket found there must also be owned by, and served
  by, a trusted user;
- the socket file is owned by a trusted uid, and the process listening on it (SO_PEERCRED: the pid, uid and
  gid the kernel recorded at listen()) runs as that same uid.
Group-writable folders count as writable by other users (the group's members are not known to be trusted).
The core's user is the owner of the Greengrass root the recipe gives as EDGECLASSIFIER_GG_ROOT: ggcore on
nucleus lite (which owns /var/lib/greengrass), root on the Java nucleus. It installs and starts this process,
so it is trusted already; without it no socket in a component's work folder could pass on lite.

Standard library only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import socket
import stat
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import AgentUntrustedError, ConfigError

logger = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
PROBE_TIMEOUT_S = 1.0
_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


@dataclass(frozen=True)
class PeerCredentials:
    """The process serving a unix socket, as the kernel recorded it when that process called listen()."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class FolderCheck:
    """folder: the socket's folder, resolved; shared: other users may create entries in it (sticky, like
    /tmp), so a free name can be taken by anyone; problem: why no trustworthy socket can live there."""

    folder: Path
    shared: bool
    problem: str | None


OWNER_ONLY_UMASK = 0o177  # what bind() creates is rw for the owner only

_umask_lock = threading.Lock()


def check_socket_path_length(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes, the most a unix socket address "
            "holds; choose a shorter one"
        )


GG_ROOT_ENV = "EDGECLASSIFIER_GG_ROOT"  # the recipes set it to {kernel:rootPath}


def greengrass_core_uid() -> int | None:
    """The owner of the Greengrass root named by EDGECLASSIFIER_GG_ROOT (the core's own user), or None when
    not under Greengrass or the root is not a folder."""
    root = os.environ.get(GG_ROOT_ENV, "")
    if not root:
        return None
    try:
        info = os.stat(root)
    except OSError:
        return None
    return info.st_uid if stat.S_ISDIR(info.st_mode) else None


def default_trusted_uids(extra: Iterable[int] = ()) -> frozenset[int]:
    """Root, this process's effective uid, the Greengrass core's user (under Greengrass), and extra."""
    core = greengrass_core_uid()
    return frozenset({0, os.geteuid(), *extra, *(() if core is None else (core,))})


def describe_uid(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _describe_uids(uids: Iterable[int]) -> str:
    return ", ".join(describe_uid(uid) for uid in sorted(uids))


def peer_credentials(path: Path, timeout: float = PROBE_TIMEOUT_S) -> PeerCredentials | None:
    """Who serves the unix socket at path (raw AF_UNIX connection, getsockopt SO_PEERCRED); None when nothing
    accepts connections there."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
        pid, uid, gid = _UCRED.unpack(probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return None
    finally:
        probe.close()
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def check_socket_folder(folder: Path, trusted_uids: frozenset[int]) -> FolderCheck:
    """Whether a socket in folder is safe from other users: folder and its ancestors owned by trusted users
    and not writable by others, unless sticky (see the module docstring)."""
    folder = folder.resolve()
    shared = False
    for current in (folder, *folder.parents):
        try:
            info = current.stat()
        except OSError as exc:
            return FolderCheck(folder, shared, f"cannot inspect {current}: {exc.strerror}")
        if not stat.S_ISDIR(info.st_mode):
            return FolderCheck(folder, shared, f"{current} is not a folder")
        if info.st_uid not in trusted_uids:
            return FolderCheck(
                folder,
                shared,
                f"{current} belongs to {describe_uid(info.st_uid)}, who can replace anything in it",
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            if not info.st_mode & stat.S_ISVTX:
                return FolderCheck(
                    folder,
                    shared,
                    f"{current} is writable by other users (mode {stat.filemode(info.st_mode)}) and not "
                    f"sticky, so anyone could replace the socket",
                )
            shared = shared or current == folder
    return FolderCheck(folder, shared, None)


def prepare_socket_folder(folder: Path, group: int | None = None) -> FolderCheck:
    """The server side: creates folder if missing (mode 0700, or 0750 owned by group so that its members
    can reach a 0660 socket), then refuses, with ConfigError, a folder other users could tamper with.
    A shared sticky folder such as /tmp is accepted with a warning (claim_socket_path then refuses any
    entry there that is not ours)."""
    if not folder.exists():
        previous = os.umask(0o022)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)
            if group is not None:
                os.chown(folder, -1, group)
            os.chmod(folder, 0o750 if group is not None else 0o700)
        except FileExistsError:
            pass  # created meanwhile by someone: checked below like any existing folder
        except PermissionError as exc:
            raise ConfigError(
                f"cannot create the socket folder {folder} ({exc.strerror}): create it for the agent's user, "
                f"or choose a socket path in a folder that user may write"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"cannot create the socket folder {folder}: {exc.strerror}") from exc
        finally:
            os.umask(previous)
    check = check_socket_folder(folder, default_trusted_uids())
    if check.problem:
        raise ConfigError(
            f"refusing to serve in {folder}: {check.problem}; give the agent a socket folder of its own "
            f"(for example --socket /run/edgeclassifier/agent.sock, which the agent creates with mode 0700)"
        )
    if group is not None and not check.shared and not check.folder.stat().st_mode & stat.S_IXGRP:
        raise ConfigError(
            f"--socket-group is set but {check.folder} does not let its group in (mode "
            f"{stat.filemode(check.folder.stat().st_mode)}): chmod g+x it or use a folder the agent creates"
        )
    if check.shared:
        logger.warning(
            "the socket folder %s is writable by every user (sticky): while the agent is down anyone can "
            "take the socket's name; clients refuse such an impostor, but prefer a folder of the agent's own "
            "(e.g. --socket /run/edgeclassifier/agent.sock)",
            check.folder,
        )
    return check


def claim_socket_path(path: Path) -> None:
    """Makes path free to bind: removes a socket a dead server left behind; ConfigError (saying what to do)
    when something else is there: a live server, a file that is not a socket, or another user's socket."""
    check_socket_path_length(path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"{path} exists and is not a unix socket; remove it or choose another socket path")
    peer = peer_credentials(path)
    if peer is not None:
        raise ConfigError(
            f"another process is serving on {path} (pid {peer.pid}, {describe_uid(peer.uid)}); stop it or "
            f"choose another socket path"
        )
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} is a socket left by another user ({describe_uid(info.st_uid)}); it cannot be replaced "
            f"safely: ask that user or root to remove it, or choose another socket path, in a folder only "
            f"this user can write"
        )
    logger.info("removing stale socket %s", path)
    try:
        path.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot remove the stale socket {path}: {exc.strerror}") from exc


def describe_socket(path: Path) -> str:
    """What is at path, in words a person can act on: nothing, not a socket, or a socket nobody answers."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return f"nothing is at {path} (is the agent running, with this socket path?)"
    except OSError as exc:
        return f"{path} cannot be examined: {exc.strerror}"
    if not stat.S_ISSOCK(info.st_mode):
        return f"{path} is not a socket but a {stat.filemode(info.st_mode)[0]!r}-type file"
    peer = peer_credentials(path)
    if peer is None:
        return f"{path} is a socket nobody answers (an agent that died?)"
    return f"pid {peer.pid} ({describe_uid(peer.uid)}) answers on {path}"


def verify_agent_socket(path: Path, trusted_uids: frozenset[int]) -> FolderCheck | None:
    """The client side, before it trusts whoever serves path: AgentUntrustedError (saying who serves there
    and what to do) unless the folder, the socket file's owner and the listening process are trusted.
    Returns the folder check (callers warn about a shared folder), or None when nothing serves there yet."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    trusted = _describe_uids(trusted_uids)
    remedy = (
        "nothing was sent to it. Stop that process, run the agent with a socket in a folder of its own "
        "(python -m agent --socket /run/edgeclassifier/agent.sock), or, if that user is yours, add its uid "
        "to the client's trusted uids (ClientOptions.trusted_uids)"
    )
    if stat.S_ISLNK(info.st_mode):
        raise AgentUntrustedError(f"{path} is a symbolic link, not the agent's socket; {remedy}")
    if not stat.S_ISSOCK(info.st_mode):
        return None  # nothing can answer there: the call fails as unreachable
    folder = check_socket_folder(path.parent, trusted_uids)
    if folder.problem:
        raise AgentUntrustedError(f"the agent socket {path} cannot be trusted: {folder.problem}; {remedy}")
    peer = peer_credentials(path)
    serving = "" if peer is None else f", served by pid {peer.pid} running as {describe_uid(peer.uid)}"
    if info.st_uid not in trusted_uids:
        raise AgentUntrustedError(
            f"the agent socket {path} belongs to {describe_uid(info.st_uid)}{serving}, not to a trusted user "
            f"({trusted}): another local user may be impersonating the agent; {remedy}"
        )
    if peer is None:
        return None
    if peer.uid not in trusted_uids or peer.uid != info.st_uid:
        raise AgentUntrustedError(
            f"the agent socket {path} is served by pid {peer.pid} running as {describe_uid(peer.uid)}, not "
            f"by its owner {describe_uid(info.st_uid)} among the trusted users ({trusted}): another local "
            f"user may be impersonating the agent; {remedy}"
        )
    return folder


@contextlib.contextmanager
def owner_only_umask() -> Iterator[None]:
    """Sets the process umask to 0o177 for the block, so that a socket bound inside it is 0600 from its
    first moment. The umask is per process: keep the block to the bind() call; blocks are serialised."""
    with _umask_lock:
        previous = os.umask(OWNER_ONLY_UMASK)
        try:
            yield
        finally:
            os.umask(previous)


def bind_owner_only(path: Path, backlog: int) -> socket.socket:
    """A listening unix socket at path that only its owner can connect to (0600 from its first moment).

    Claims the path first (claim_socket_path: a dead server's socket is removed, anything else refused)."""
    claim_socket_path(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with owner_only_umask():
            listener.bind(str(path))
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    return listener
