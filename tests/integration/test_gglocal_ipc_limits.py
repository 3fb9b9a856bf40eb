"""The IPC server under floods of unauthenticated connections, against the real awsiotsdk client: more
connections than select() can watch, a 24 MiB frame before CONNECT, silent clients, the connection limits,
and a process out of file descriptors."""

from __future__ import annotations

import contextlib
import io
import json
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from gglocal.codec import MessageDecoder, encode_message
from gglocal.iotcore import StdoutIotCore
from gglocal.rpc import MessageType, RpcMessage
from gglocal.server import IpcServer, ServerLimits
from tests.gglocal_builds import publish_access, wait_until

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 10.0
ACCESS = publish_access("probe/#")
ClientFactory = Callable[[IpcServer, str], Any]


@contextlib.contextmanager
def open_files_soft_limit(at_least: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= at_least:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < at_least:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below the {at_least} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def raw_connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))  # blocking: waits while the listen backlog is full
    sock.settimeout(TIMEOUT)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed the connection (reads EOF, possibly after one last frame)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def publish_once(client: Any, topic: str = "probe/x") -> None:
    client.publish_to_iot_core_async(topic_name=topic, qos="0", payload=b'{"ok": 1}').result(TIMEOUT)


@pytest.fixture
def make_server(ipc_socket_path: Path) -> Iterator[Callable[[ServerLimits], IpcServer]]:
    servers: list[IpcServer] = []

    def make(limits: ServerLimits) -> IpcServer:
        server = IpcServer(ipc_socket_path, iot=StdoutIotCore(io.StringIO()), limits=limits)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_1100_idle_connections_do_not_lock_out_a_real_client(
    make_server: Callable[[ServerLimits], IpcServer], ipc_client: ClientFactory
) -> None:
    # before: select() refused every connection past ~1,015 (FD_SETSIZE); 1,100 idle ones locked clients out
    with open_files_soft_limit(4096):
        server = make_server(ServerLimits(max_unauthenticated=2048, auth_timeout_s=60.0))
        threads_before = threading.active_count()
        idle = [raw_connect(server.socket_path) for _ in range(1100)]
        try:
            assert wait_until(lambda: server.unauthenticated_count == 1100, TIMEOUT)
            assert threading.active_count() <= threads_before, "idle connections cost no threads"
            highest_fd = max(int(entry.name) for entry in Path("/proc/self/fd").iterdir())
            assert highest_fd > 2 * 1100, "the server holds descriptors far beyond FD_SETSIZE (1024)"
            client = ipc_client(server, server.register_component("com.example.Pub", ACCESS))
            publish_once(client)
            assert isinstance(server.iot, StdoutIotCore) and server.iot.published == 1
            assert server.unauthenticated_count == 1100 and server.connection_count == 1
        finally:
            for sock in idle:
                sock.close()


def test_past_the_unauthenticated_limit_the_oldest_waiting_connection_makes_room(
    make_server: Callable[[ServerLimits], IpcServer],
    ipc_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server(ServerLimits(max_unauthenticated=4, auth_timeout_s=60.0))
    idle = [raw_connect(server.socket_path) for _ in range(10)]
    try:
        assert wait_until(lambda: server.unauthenticated_count == 4, TIMEOUT)
        for sock in idle[:6]:
            assert closed_by_server(sock)
        client = ipc_client(server, server.register_component("com.example.Pub", ACCESS))
        publish_once(client)
        assert "4 connections waiting (the limit): closing the oldest" in caplog.text
    finally:
        for sock in idle:
            sock.close()


def test_authenticated_connections_past_the_limit_are_refused_with_a_clear_log_line(
    make_server: Callable[[ServerLimits], IpcServer],
    ipc_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from awsiot.eventstreamrpc import AccessDeniedError

    server = make_server(ServerLimits(max_connections=2))
    svcuid = server.register_component("com.example.Pub", ACCESS)
    first, second = ipc_client(server, svcuid), ipc_client(server, svcuid)
    with pytest.raises(AccessDeniedError):
        ipc_client(server, svcuid)
    assert "refused a connection of com.example.Pub: 2 IPC connections are open, the limit" in caplog.text
    publish_once(first)
    second.close().result(TIMEOUT)
    assert wait_until(lambda: server.connection_count == 1, TIMEOUT)
    publish_once(ipc_client(server, svcuid))


def test_a_silent_or_dribbling_connection_is_closed_after_the_auth_timeout(
    make_server: Callable[[ServerLimits], IpcServer], ipc_client: ClientFactory
) -> None:
    server = make_server(ServerLimits(auth_timeout_s=1.0))
    started = time.monotonic()
    silent = raw_connect(server.socket_path)
    dribbling = raw_connect(server.socket_path)
    ping = encode_message(RpcMessage(MessageType.PING).to_event_message())
    try:
        for _ in range(8):  # pings are answered, but do not make the connection authenticated
            dribbling.sendall(ping)
            time.sleep(0.1)
        assert closed_by_server(silent) and closed_by_server(dribbling)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 6.0, elapsed
        assert server.unauthenticated_count == 0
        publish_once(ipc_client(server, server.register_component("com.example.Pub", ACCESS)))
    finally:
        silent.close()
        dribbling.close()


def huge_prelude(total: int) -> bytes:
    prelude = struct.pack(">II", total, 0)
    return prelude + struct.pack(">I", zlib.crc32(prelude))


def read_json_line(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise AssertionError("the server process ended early")
    return dict(json.loads(line))


@contextlib.contextmanager
def server_process(socket_path: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.ipc_server_process", str(socket_path), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process, read_json_line(process.stdout)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(TIMEOUT)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    stats = read_json_line(process.stdout)
    assert process.wait(TIMEOUT) == 0
    return stats


def connect_client(socket_path: Path, svcuid: str) -> Any:
    from awsiot.greengrasscoreipc import connect
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    return GreengrassCoreIPCClientV2(
        client=connect(ipc_socket=str(socket_path), authtoken=svcuid, timeout=10.0)
    )


def test_a_24_mib_frame_before_connect_is_refused_at_its_prelude_and_memory_stays_bounded(
    ipc_socket_path: Path,
) -> None:
    # before: 8 such connections took the server from 23 to 217 MiB peak RSS (24 MiB buffered each)
    total = 24 * 1024 * 1024
    body = huge_prelude(total) + bytes(total - 12)
    with server_process(ipc_socket_path) as (process, ready):
        outcomes: list[tuple[str, float]] = []

        def attack() -> None:
            with raw_connect(ipc_socket_path) as sock:
                started = time.monotonic()
                try:
                    sock.sendall(body)
                    outcome = "sent"
                except OSError as exc:
                    outcome = type(exc).__name__
                outcomes.append((outcome, time.monotonic() - started))

        attackers = [threading.Thread(target=attack) for _ in range(8)]
        for thread in attackers:
            thread.start()
        for thread in attackers:
            thread.join(TIMEOUT * 3)
        assert len(outcomes) == 8 and all(
            o in ("BrokenPipeError", "ConnectionResetError") for o, _ in outcomes
        )
        assert max(seconds for _, seconds in outcomes) < 5.0, outcomes
        with raw_connect(ipc_socket_path) as sock:  # the refusal says why
            sock.sendall(huge_prelude(total))
            (frame,) = MessageDecoder().feed(sock.recv(65536))
            refusal = RpcMessage.from_event_message(frame)
            assert refusal.message_type == MessageType.PROTOCOL_ERROR
            assert b"outside 16..65536" in refusal.payload
        client = connect_client(ipc_socket_path, ready["svcuid"])
        publish_once(client)
        client.close().result(TIMEOUT)
        stats = finish(process)
    growth_mib = (stats["vm_hwm_kib"] - ready["vm_hwm_kib"]) / 1024
    assert growth_mib < 40, f"peak RSS grew by {growth_mib:.0f} MiB"
    assert stats["published"] == 1


def test_a_process_out_of_file_descriptors_keeps_accepting_by_closing_the_oldest_waiting_connection(
    ipc_socket_path: Path,
) -> None:
    # before: accept() failing with EMFILE ended the accept thread: no connection was ever accepted again
    with server_process(ipc_socket_path, "--nofile", "64") as (process, ready):
        idle = [raw_connect(ipc_socket_path) for _ in range(100)]
        try:
            time.sleep(0.5)
            client = connect_client(ipc_socket_path, ready["svcuid"])
            publish_once(client)
            client.close().result(TIMEOUT)
        finally:
            for sock in idle:
                sock.close()
        assert finish(process)["published"] == 1
