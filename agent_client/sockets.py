"""Unix socket paths shared by the agent, the component and gglocal: one place that decides whether a path may
be bound (a socket left by a dead server is removed; a live one, another user's, or a non-socket is refused).

Standard library only.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

from .errors import ConfigError

logger = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
PROBE_TIMEOUT_S = 1.0


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
    if not answers(path):
        return f"{path} is a socket nobody answers (an agent that died?)"
    return f"a server answers on {path}, owned by uid {info.st_uid}"
