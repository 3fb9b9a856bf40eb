"""Control socket of a running stand-in: one JSON request line in, one JSON response line out.

Requests (``gglocal.control_commands`` lists them all): ``{"cmd": "status"}``, ``{"cmd": "config",
"component": N, "merge": {...}, "reset": ["/p"], "cloud": false}``, ``{"cmd": "deploy", ...}``,
``{"cmd": "stop"}``. Responses: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The socket path
(and the IPC socket path) are written to ``<root>/gglocal.json`` so the CLI finds them from ``--root``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent_client.sockets import bind_owner_only
from gglocal.errors import ControlError, GgLocalError
from gglocal.netloop import SessionLimits, SessionLoop, Verdict
from gglocal.private import write_private_text

logger = logging.getLogger(__name__)

STATE_FILE = "gglocal.json"
IO_TIMEOUT_S = 10.0
MAX_REQUEST = 256 * 1024
MAX_REPLY = 16 * 1024 * 1024
REPLY_TIMEOUT_S = 2.0
LISTEN_BACKLOG = 64
CONTROL_LIMITS = SessionLimits(max_sessions=16, timeout_s=5.0, max_bytes=MAX_REQUEST)

CommandHandler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Serves control requests on a unix socket.

    Requests are read by a session loop (gglocal.netloop), so a client that is slow, silent or sends too
    much holds no one else up: each has ``CONTROL_LIMITS.timeout_s`` to send one line of at most
    ``MAX_REQUEST`` bytes. No input ends the loop: bad JSON (also nested too deep for the parser), a
    non-object, an unknown command or a failing handler are answered ``{"ok": false, "error": ...}``.
    """

    def __init__(
        self,
        socket_path: Path,
        handlers: Mapping[str, CommandHandler],
        limits: SessionLimits = CONTROL_LIMITS,
    ) -> None:
        self.socket_path = socket_path
        self.limits = limits
        self.failures = 0
        self._handlers = handlers
        self._listener: socket.socket | None = None
        self._loop: SessionLoop | None = None

    def start(self) -> None:
        self._listener = bind_owner_only(self.socket_path, LISTEN_BACKLOG)
        self._loop = SessionLoop(
            self._listener, lambda sock, name: _Request(sock, name, self), self.limits, name="control"
        )
        self._loop.start()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
        if self._listener is not None:
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def answer(self, line: bytes) -> dict[str, Any]:
        """The response to one request line; never raises."""
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
            return self.refuse(f"bad request: not JSON: {exc}")
        if not isinstance(request, dict):
            return self.refuse("bad request: must be a JSON object")
        handler = self._handlers.get(str(request.get("cmd")))
        if handler is None:
            return self.refuse(f"unknown cmd {request.get('cmd')!r}; use one of {sorted(self._handlers)}")
        try:
            return {"ok": True, **handler(request)}
        except (GgLocalError, KeyError, ValueError, TypeError, RecursionError) as exc:
            return self.refuse(str(exc))
        except Exception as exc:  # a handler's bug must not end the control socket
            logger.exception("control command %s failed", request.get("cmd"))
            return self.refuse(f"internal error: {exc}")

    def refuse(self, error: str) -> dict[str, Any]:
        """Count and log a refused request; its response."""
        self.failures += 1
        logger.warning("control request refused (%d so far): %s", self.failures, error[:200])
        return {"ok": False, "error": error}


class _Request:
    """One control connection: a netloop Session reading one request line, answering it once."""

    def __init__(self, sock: socket.socket, name: str, server: ControlServer) -> None:
        self._sock = sock
        self._name = name
        self._server = server
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Verdict:
        self._buffer += data
        if data and b"\n" not in data:
            return Verdict.READ_MORE
        line = bytes(self._buffer).split(b"\n", 1)[0]
        if line.strip():
            self._reply(self._server.answer(line))
        return Verdict.CLOSE

    def close(self, reason: str) -> None:
        self._reply(self._server.refuse(f"bad request: {reason}"))

    def take_over(self) -> None:
        raise AssertionError("control requests are not handed off")

    def _reply(self, response: dict[str, Any]) -> None:
        try:
            data = json.dumps(response).encode() + b"\n"
        except (TypeError, ValueError, RecursionError) as exc:
            data = (
                json.dumps({"ok": False, "error": f"internal error: reply not JSON: {exc}"}).encode() + b"\n"
            )
        try:
            self._sock.settimeout(REPLY_TIMEOUT_S)
            self._sock.sendall(data)
        except OSError as exc:
            logger.info("%s: control reply failed: %s", self._name, exc)


def _read_line(conn: socket.socket, limit: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError(f"reply larger than {limit} bytes")
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
            reply = json.loads(_read_line(conn, MAX_REPLY) or b"{}")
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot reach the stand-in at {socket_path}: {exc}") from exc
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "the stand-in refused the command")))
    return dict(reply)
