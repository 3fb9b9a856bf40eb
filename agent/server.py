"""The agent process: options, socket preparation, gRPC server with health service, graceful stop.

Who may call the agent. gRPC Python gives a server no access to its peer's credentials (the auth context of
an insecure or local-credentials unix socket connection is empty: grpc/grpc#15511, #28755), so the agent
cannot check SO_PEERCRED per call the way its clients check it. Access is enforced by the kernel instead:
- the socket file is created owner-only (bound under a umask of 0177, then mode 0600), or 0660 with its
  group set to --socket-group, and connect() on a unix socket needs write permission on that file;
- the agent creates a missing socket folder itself (0700, or 0750 with --socket-group) and refuses to serve
  in a folder that another user owns or may write, unless it is sticky like /tmp (where no one else can
  remove or rename our socket), and in that case refuses any existing entry of another user
  (agent_client.sockets.prepare_socket_folder, claim_socket_path);
- shared memory tensors are read only from segments a trusted uid owns (agent.inputs).
Clients check the agent in turn (agent_client.sockets.verify_agent_socket).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent_client.client import socket_target
from agent_client.errors import ConfigError
from agent_client.sockets import (
    check_socket_path_length,
    claim_socket_path,
    default_trusted_uids,
    describe_uid,
    prepare_socket_folder,
)

from . import backends
from .backends import RuntimeSettings
from .datacapture import CaptureLimits, CaptureWriter
from .inputs import ShmPolicy
from .limits import AgentStats, ByteBudget, add_agent_service
from .models import ModelRegistry
from .package import check_models_root
from .service import AgentService

logger = logging.getLogger(__name__)

SERVICE_NAME = "AWS.SageMaker.Edge.Agent"
MIB = 1024 * 1024


STREAM_WINDOW_BYTES = 256 * 1024  # each stream's receive window


@dataclass(frozen=True)
class AgentOptions:
    """socket: unix socket path; models_root: one folder or several, LoadModel urls must lie inside one;
    threads: runtime threads per model; spin: let idle runtime threads spin (see RuntimeSettings);
    capture_dir: where CaptureData writes (None disables it), within capture_limits; workers: RPCs run at
    once; max_concurrent_rpcs: calls accepted at once (running + queued), the rest RESOURCE_EXHAUSTED;
    max_message_bytes: largest request (and shared memory tensor); max_inflight_bytes: request bytes being
    handled at once; socket_group: gid that may connect (socket 0660), None for the owner only (0600);
    trusted_uids: uids besides the agent's own and root whose shared memory segments it reads."""

    socket: Path
    models_root: Path | Sequence[Path]
    threads: int = 2
    capture_dir: Path | None = None
    workers: int = 4
    max_message_bytes: int = 32 * MIB
    max_concurrent_rpcs: int = 64
    max_inflight_bytes: int = 64 * MIB
    socket_group: int | None = None
    trusted_uids: frozenset[int] = frozenset()
    spin: bool = False
    capture_limits: CaptureLimits = field(default_factory=CaptureLimits)

    def __post_init__(self) -> None:
        check_socket_path_length(self.socket)
        if not self.models_roots:
            raise ConfigError("the agent needs a models root: pass --models-root DIR")
        for root in self.models_roots:
            if not root.is_dir():
                raise ConfigError(f"models root {root} is not a folder; pass --models-root DIR")
            problem = check_models_root(root, self.all_trusted_uids)
            if problem:
                raise ConfigError(f"{problem}; the agent only loads packages no other user can change")
        _check_range("threads", self.threads, 1, 64, "--threads")
        _check_range("workers", self.workers, 1, 64, "--workers")
        _check_range(
            "max concurrent RPCs", self.max_concurrent_rpcs, self.workers, 100_000, "--max-concurrent-rpcs"
        )
        if self.max_message_bytes < 1024:
            raise ConfigError(f"max message size must be at least 1 KiB, got {self.max_message_bytes} bytes")
        if self.max_inflight_bytes < self.max_message_bytes:
            raise ConfigError(
                f"--max-inflight-mb ({self.max_inflight_bytes // MIB}) must be at least --max-message-mb "
                f"({self.max_message_bytes // MIB}), or the largest request could never be served"
            )

    @property
    def models_roots(self) -> tuple[Path, ...]:
        return (self.models_root,) if isinstance(self.models_root, Path) else tuple(self.models_root)

    @property
    def all_trusted_uids(self) -> frozenset[int]:
        return default_trusted_uids(self.trusted_uids)


def _check_range(what: str, value: int, low: int, high: int, flag: str) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{what} must be {low}..{high}, got {value}; set {flag}")


class AgentServer:
    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        settings = RuntimeSettings(threads=options.threads, spin=options.spin)
        self.registry = ModelRegistry(options.models_roots, settings, options.all_trusted_uids)
        self.capture = (
            CaptureWriter(options.capture_dir, options.capture_limits) if options.capture_dir else None
        )
        self.budget = ByteBudget(options.max_inflight_bytes)
        self.stats = AgentStats()
        self.health = health.HealthServicer()
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self._prepare_socket_folder()
        self._claim_socket()
        self._start_capture()
        self._server = self._build_server()
        self._bind_socket()
        self._mark_serving()
        threading.Thread(target=backends.warm_up, name="agent-warm-up", daemon=True).start()
        logger.info(
            "agent serving on %s (models roots %s; trusting %s)",
            self.options.socket,
            ", ".join(map(str, self.options.models_roots)),
            ", ".join(describe_uid(uid) for uid in sorted(self.options.all_trusted_uids)),
        )

    def stop(self, grace: float = 5.0) -> None:
        """Refuses new calls, lets running ones finish within grace seconds, drains captures, unloads."""
        self.health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)
        if self.capture is not None:
            self.capture.stop()
        self.registry.unload_all()
        if self._server is not None:
            with contextlib.suppress(FileNotFoundError):
                self.options.socket.unlink()
        logger.info("agent stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the server terminates; True if it did within timeout."""
        return self._server.wait_for_termination(timeout) if self._server else True

    def _prepare_socket_folder(self) -> None:
        prepare_socket_folder(self.options.socket.parent, self.options.socket_group)

    def _claim_socket(self) -> None:
        claim_socket_path(self.options.socket)

    def _start_capture(self) -> None:
        if self.capture is not None:
            self.capture.start()

    def _build_server(self) -> grpc.Server:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.options.workers, thread_name_prefix="agent-rpc"),
            options=[
                ("grpc.max_receive_message_length", self.options.max_message_bytes),
                ("grpc.max_send_message_length", self.options.max_message_bytes),
                # BDP probing grows each stream's receive window, so calls waiting for a worker buffer more
                # of their message (measured, 1,000 602 kB frames at once: peak +100 MiB with it, +45 off).
                ("grpc.http2.bdp_probe", 0),
                # ...but a stream's window must hold a whole usual Predict (a 224x224 uint8 frame, 150 kB),
                # or each request waits for WINDOW_UPDATE round trips (measured: 0.3 ms of CPU per call);
                # a queued call buffers up to this much outside the byte budget (agent.limits)
                ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
            ],
            maximum_concurrent_rpcs=self.options.max_concurrent_rpcs,
        )
        shm = ShmPolicy(self.options.all_trusted_uids, self.options.max_message_bytes)
        service = AgentService(self.registry, self.capture, shm, self.budget, self.stats)
        add_agent_service(server, service, self.budget, self.stats)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        return server

    def _bind_socket(self) -> None:
        assert self._server is not None
        # The socket file is created by bind(): a umask makes it owner-only from its first moment; the group
        # gets it (0660) only once it belongs to that group.
        previous = os.umask(0o177)
        try:
            try:
                self._server.add_insecure_port(socket_target(self.options.socket))
            except RuntimeError as exc:
                raise ConfigError(f"cannot bind the agent socket {self.options.socket}: {exc}") from exc
            self._server.start()
        finally:
            os.umask(previous)
        if self.options.socket_group is None:
            os.chmod(self.options.socket, 0o600)
            return
        try:
            os.chown(self.options.socket, -1, self.options.socket_group)
        except PermissionError as exc:
            raise ConfigError(
                f"cannot give the socket to group {self.options.socket_group} ({exc.strerror}): the agent's "
                f"user must be a member of that group (usermod -aG), or drop --socket-group"
            ) from exc
        os.chmod(self.options.socket, 0o660)

    def _mark_serving(self) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
