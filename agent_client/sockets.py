"""Unix socket paths shared by the agent, the component and gglocal: one place that decides whether a path may
be bound (a socket left by a dead server is removed; a live one, another user's, or a non-socket is refused).

Standard library only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

logger = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
PROBE_TIMEOUT_S = 1.0
OWNER_ONLY_UMASK = 0o177  # what bind() creates is rw for the owner only

_umask_lock = threading.Lock()


def check_socket_path_length(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes, the most a unix socket address "
            "holds; choose a shorter one"
        )


def answers(path: Path, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a server accepts connections on the unix socket at path."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


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
    if answers(path):
        raise ConfigError(f"another process is serving on {path}; stop it or choose another socket path")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} is a socket left by another user (uid {info.st_uid}); it cannot be replaced safely: "
            f"ask that user or root to remove it, or choose another socket path"
        )
    logger.info("removing stale socket %s", path)
    try:
        path.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot remove the stale socket {path}: {exc.strerror}") from exc


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
