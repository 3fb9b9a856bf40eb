"""Control socket of a running stand-in: one JSON request line in, one JSON response line out.

Requests: ``{"cmd": "status"}``, ``{"cmd": "config", "component": N, "merge": {...}, "reset": ["/p"]}``,
``{"cmd": "stop"}``. Responses: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The socket path
(and the IPC socket path) are written to ``<root>/gglocal.json`` so the CLI finds them from ``--root``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent_client.sockets import bind_owner_only
from gglocal.errors import ControlError, GgLocalError
from gglocal.private import write_private_text

logger = logging.getLogger(__name__)

STATE_FILE = "gglocal.json"
POLL_S = 0.25
IO_TIMEOUT_S = 10.0
MAX_REQUEST = 1024 * 1024

CommandHandler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Serves control requests on a unix socket, one short connection at a time."""

    def __init__(self, socket_path: Path, handlers: Mapping[str, CommandHandler]) -> None:
        self.socket_path = socket_path
        self._handlers = handlers
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="gglocal-control", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._listener = bind_owner_only(self.socket_path, 8)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(IO_TIMEOUT_S)
        if self._listener is not None:
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], POLL_S)
                if not ready:
                    continue
                conn, _ = self._listener.accept()
            except OSError as exc:
                if not self._stop.is_set():
                    logger.error("control socket failed: %s", exc)
                return
            with conn:
                conn.settimeout(IO_TIMEOUT_S)
                try:
                    request = json.loads(_read_line(conn))
                    response = self._dispatch(request)
                except (OSError, ValueError) as exc:
                    self.failures += 1
                    logger.warning("bad control request (%d so far): %s", self.failures, exc)
                    response = {"ok": False, "error": f"bad request: {exc}"}
                try:
                    conn.sendall(json.dumps(response).encode() + b"\n")
                except OSError as exc:
                    logger.warning("control reply failed: %s", exc)

    def _dispatch(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        handler = self._handlers.get(str(request.get("cmd")))
        if handler is None:
            return {
                "ok": False,
                "error": f"unknown cmd {request.get('cmd')!r}; use one of {sorted(self._handlers)}",
            }
        try:
            return {"ok": True, **handler(request)}
        except (GgLocalError, KeyError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    return data


def write_state_file(root: Path, **paths: str) -> None:
    """``<root>/gglocal.json``, replaced atomically, owner-only (0600)."""
    write_private_text(root / STATE_FILE, json.dumps(paths, indent=2) + "\n")


def read_state_file(root: Path) -> dict[str, Any]:
    path = root / STATE_FILE
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise ControlError(f"no stand-in is running with root {root} ({path} is missing)") from exc
    except ValueError as exc:
        raise ControlError(f"{path} is not valid JSON: {exc}") from exc


def send_command(root: Path, request: dict[str, Any], timeout: float = IO_TIMEOUT_S) -> dict[str, Any]:
    """Send one request to the stand-in running with ``root``; raises ControlError on failure."""
    socket_path = read_state_file(root).get("control_socket")
    if not socket_path:
        raise ControlError(f"{root / STATE_FILE} has no control_socket")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(socket_path))
            conn.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(_read_line(conn) or b"{}")
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot reach the stand-in at {socket_path}: {exc}") from exc
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "the stand-in refused the command")))
    return dict(reply)
