"""A session loop: one thread and one selector (epoll where the OS has it) that accepts on a unix listener
and reads every new connection without blocking until its session has what it needs.

Used for what a server must do before it trusts a client: the IPC handshake and control requests. Nothing
here depends on descriptor numbers (no ``select()``), and no client can stall or stop the loop:

- ``max_sessions``: a new connection beyond it closes the oldest session (a flood of idle connections
  cannot lock out a client that finishes promptly);
- ``timeout_s``: a session not finished within this time of being accepted is closed;
- ``max_bytes``: a session that receives more than this is closed;
- out of descriptors (EMFILE): the oldest session is closed, or accepting pauses for a moment;
- a session that raises is logged and closed; the loop goes on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from gglocal.throttle import LogThrottle

logger = logging.getLogger(__name__)

POLL_S = 0.25
READ_CHUNK = 65536
ACCEPT_BATCH = 256
ACCEPT_PAUSE_S = 0.1
JOIN_TIMEOUT_S = 5.0
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Verdict(Enum):
    """What a session wants after a feed."""

    READ_MORE = "read more"
    CLOSE = "close"  # the loop closes the socket
    LINGER = "linger"  # discard what comes until the peer closes or ``linger_s`` passes, then close
    HANDED_OFF = "handed off"  # the loop forgets the socket, then calls take_over()


class Session(Protocol):
    """One connection's business while it is in the loop (runs on the loop thread: must not block)."""

    def feed(self, data: bytes) -> Verdict:
        """Bytes from the peer; ``b""`` at the end of its stream."""

    def close(self, reason: str) -> None:
        """The loop ends the session (timeout, byte bound, eviction, stop), then closes the socket."""

    def take_over(self) -> None:
        """After HANDED_OFF: the socket is out of the loop and now the session's to use."""


SessionFactory = Callable[[socket.socket, str], Session]


@dataclass(frozen=True)
class SessionLimits:
    """Bounds on the sessions of one loop; see the module docstring."""

    max_sessions: int
    timeout_s: float
    max_bytes: int
    linger_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_sessions < 1 or self.timeout_s <= 0 or self.max_bytes < 1 or self.linger_s < 0:
            raise ValueError(f"session limits must be positive: {self}")


@dataclass
class _Entry:
    sock: socket.socket
    fd: int
    session: Session
    name: str
    deadline: float
    received: int = 0
    lingering: bool = False


class SessionLoop:
    """Runs sessions for the connections accepted on ``listener``; ``start()``, ``stop()``."""

    def __init__(
        self, listener: socket.socket, open_session: SessionFactory, limits: SessionLimits, *, name: str
    ) -> None:
        self.limits = limits
        self.name = name
        self.evicted = 0
        self.expired = 0
        self.oversized = 0
        self._listener = listener
        self._open_session = open_session
        self._entries: dict[int, _Entry] = {}  # insertion order is age
        self._counter = 0
        self._selector = selectors.DefaultSelector()
        self._accepting = True
        self._resume_at = 0.0
        self._stop = threading.Event()
        self._evict_log = LogThrottle()
        self._fd_log = LogThrottle()
        self._thread = threading.Thread(target=self._run, name=f"{name}-loop", daemon=True)

    @property
    def sessions(self) -> int:
        """Connections currently in the loop."""
        return len(self._entries)

    def start(self) -> None:
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop; every session still in it is closed."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)

    # -- loop ------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._resume_accepting()
                for key, _ in self._selector.select(self._wait_s()):
                    if key.data is None:
                        self._accept()
                    else:
                        self._read(key.data)
                self._expire()
        finally:
            for entry in list(self._entries.values()):
                self._drop(entry, "the server is stopping")
            self._selector.close()

    def _wait_s(self) -> float:
        wait = POLL_S
        if self._entries:
            oldest = next(iter(self._entries.values()))
            wait = min(wait, oldest.deadline - time.monotonic())
        if not self._accepting:
            wait = min(wait, self._resume_at - time.monotonic())
        return max(wait, 0.0)

    def _expire(self) -> None:
        now = time.monotonic()
        for entry in [e for e in self._entries.values() if e.deadline <= now]:
            if not entry.lingering:
                self.expired += 1
            self._drop(entry, f"nothing useful within {self.limits.timeout_s:g} s")

    # -- accepting -------------------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    self._out_of_descriptors(exc)
                elif not self._stop.is_set():
                    logger.warning("%s: accept failed: %s", self.name, exc)
                return
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        if len(self._entries) >= self.limits.max_sessions:
            self.evicted += 1
            if (held := self._evict_log.ready()) is not None:
                logger.warning(
                    "%s: %d connections waiting (the limit): closing the oldest to admit a new one "
                    "(%d closed so far; %d more not logged)",
                    self.name,
                    self.limits.max_sessions,
                    self.evicted,
                    held,
                )
            self._drop(next(iter(self._entries.values())), "evicted: too many waiting connections")
        self._counter += 1
        name = f"{self.name}-{self._counter}"
        sock.setblocking(False)
        try:
            session = self._open_session(sock, name)
        except Exception:
            logger.exception("%s: could not open a session", name)
            sock.close()
            return
        entry = _Entry(sock, sock.fileno(), session, name, time.monotonic() + self.limits.timeout_s)
        self._entries[entry.fd] = entry
        self._selector.register(sock, selectors.EVENT_READ, entry)

    def _out_of_descriptors(self, exc: OSError) -> None:
        if (held := self._fd_log.ready()) is not None:
            logger.warning(
                "%s: out of file descriptors (%s, %d waiting connections); %s (%d more not logged)",
                self.name,
                exc.strerror,
                len(self._entries),
                "closing the oldest waiting one" if self._entries else "pausing accept",
                held,
            )
        if self._entries:
            self.evicted += 1
            self._drop(next(iter(self._entries.values())), "evicted: out of file descriptors")
            return
        self._selector.unregister(self._listener)
        self._accepting = False
        self._resume_at = time.monotonic() + ACCEPT_PAUSE_S

    def _resume_accepting(self) -> None:
        if not self._accepting and time.monotonic() >= self._resume_at:
            self._selector.register(self._listener, selectors.EVENT_READ, None)
            self._accepting = True

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, entry: _Entry) -> None:
        try:
            data = entry.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(entry, f"receive failed: {exc}")
            return
        entry.received += len(data)
        if entry.received > self.limits.max_bytes:
            self.oversized += 1
            self._drop(entry, f"sent more than {self.limits.max_bytes} bytes")
            return
        if entry.lingering:
            if not data:
                self._forget(entry)
                entry.sock.close()
            return
        try:
            verdict = entry.session.feed(data)
        except Exception:
            logger.exception("%s: session failed; closing the connection", entry.name)
            verdict = Verdict.CLOSE
        if verdict is Verdict.READ_MORE and data:
            return
        if verdict is Verdict.LINGER and data:
            entry.lingering = True
            entry.deadline = min(entry.deadline, time.monotonic() + self.limits.linger_s)
            return
        self._forget(entry)
        if verdict is not Verdict.HANDED_OFF:
            entry.sock.close()
            return
        try:
            entry.session.take_over()
        except Exception:
            logger.exception("%s: hand-off failed; closing the connection", entry.name)
            entry.sock.close()

    def _forget(self, entry: _Entry) -> None:
        self._entries.pop(entry.fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(entry.sock)

    def _drop(self, entry: _Entry, reason: str) -> None:
        self._forget(entry)
        if not entry.lingering:
            logger.debug("%s: %s", entry.name, reason)
            try:
                entry.session.close(reason)
            except Exception:
                logger.exception("%s: closing the session failed", entry.name)
        entry.sock.close()
