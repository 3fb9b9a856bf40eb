"""The agent process: options, socket preparation, gRPC server with health service, graceful stop."""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent_client import agent_pb2_grpc
from agent_client.client import socket_target
from agent_client.errors import ConfigError
from agent_client.sockets import check_socket_path_length, claim_socket_path

from .datacapture import CaptureWriter
from .models import ModelRegistry
from .service import AgentService

logger = logging.getLogger(__name__)

SERVICE_NAME = "AWS.SageMaker.Edge.Agent"


@dataclass(frozen=True)
class AgentOptions:
    """socket: unix socket path; models_root: LoadModel urls must lie under it; threads: runtime threads
    per model; capture_dir: where CaptureData writes (None disables it); workers: concurrent RPCs;
    max_message_bytes: largest request accepted."""

    socket: Path
    models_root: Path
    threads: int = 2
    capture_dir: Path | None = None
    workers: int = 4
    max_message_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        check_socket_path_length(self.socket)
        if not self.models_root.is_dir():
            raise ConfigError(f"models root {self.models_root} is not a folder; pass --models-root DIR")
        if not 1 <= self.threads <= 64:
            raise ConfigError(f"threads must be 1..64, got {self.threads}")
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"workers must be 1..64, got {self.workers}")
        if self.max_message_bytes < 1024:
            raise ConfigError(f"max message size must be at least 1 KiB, got {self.max_message_bytes} bytes")


class AgentServer:
    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.registry = ModelRegistry(options.models_root, options.threads)
        self.capture = CaptureWriter(options.capture_dir) if options.capture_dir else None
        self.health = health.HealthServicer()
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self._prepare_socket()
        self._start_capture()
        self._server = self._build_server()
        self._bind_owner_only()
        self._mark_serving()
        logger.info("agent serving on %s (models root %s)", self.options.socket, self.options.models_root)

    def stop(self, grace: float = 5.0) -> None:
        """Refuses new calls, lets running ones finish within grace seconds, drains captures, unloads."""
        self.health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)
        if self.capture is not None:
            self.capture.stop()
        self.registry.unload_all()
        with contextlib.suppress(FileNotFoundError):
            self.options.socket.unlink()
        logger.info("agent stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the server terminates; True if it did within timeout."""
        return self._server.wait_for_termination(timeout) if self._server else True

    def _prepare_socket(self) -> None:
        self.options.socket.parent.mkdir(parents=True, exist_ok=True)
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
            ],
        )
        agent_pb2_grpc.add_AgentServicer_to_server(AgentService(self.registry, self.capture), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        return server

    def _bind_owner_only(self) -> None:
        assert self._server is not None
        # The socket file is created by bind(): a umask makes it owner-only from its first moment.
        previous = os.umask(0o177)
        try:
            self._server.add_insecure_port(socket_target(self.options.socket))
            self._server.start()
        finally:
            os.umask(previous)
        os.chmod(self.options.socket, 0o600)

    def _mark_serving(self) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
