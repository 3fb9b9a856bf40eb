"""Bounded fuzz run (hypothesis, fixed budget, derandomized) against a live IPC server: hostile frames and
operations, before and after a valid CONNECT. The server answers or closes each connection within a bound,
logs no unexpected exception, and afterwards still serves the real awsiotsdk client."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gglocal.codec import Header, MessageDecoder
from gglocal.iotcore import StdoutIotCore
from gglocal.rpc import CONNECTION_ACCEPTED, PROTOCOL_VERSION, MessageType, RpcMessage
from gglocal.server import IpcServer, ServerLimits, short_socket_path
from tests.event_stream_strategies import encoded, operation_calls, wire_inputs

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
CLOSE_WITHIN_S = 3.0
EVERYTHING = {
    "Setting": {"a": 1},
    "accessControl": {
        "aws.greengrass.ipc.mqttproxy": {"all": {"operations": ["*"], "resources": ["*"]}},
        "aws.greengrass.ipc.pubsub": {"all": {"operations": ["*"], "resources": ["*"]}},
    },
}


class Unexpected(logging.Handler):
    """Collects log records that carry a traceback: an exception the server did not expect."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IpcServer, str, Unexpected]]:
    path = short_socket_path(tmp_path_factory.mktemp("fuzz"), "ipc.sock")
    server = IpcServer(path, iot=StdoutIotCore(io.StringIO()), limits=ServerLimits(auth_timeout_s=2.0))
    server.start()
    svcuid = server.register_component("com.example.Fuzz", EVERYTHING)
    unexpected = Unexpected()
    logging.getLogger("gglocal").addHandler(unexpected)
    try:
        yield server, svcuid, unexpected
    finally:
        logging.getLogger("gglocal").removeHandler(unexpected)
        server.stop()


def connect_message(svcuid: str) -> bytes:
    headers = (Header.string(":version", PROTOCOL_VERSION),)
    payload = json.dumps({"authToken": svcuid}).encode()
    return encoded(RpcMessage(MessageType.CONNECT, 0, 0, headers, payload))


def drain_until_closed(sock: socket.socket) -> bool:
    """Read until the server closes; False if it neither answers nor closes within CLOSE_WITHIN_S."""
    deadline = time.monotonic() + CLOSE_WITHIN_S
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    session=st.one_of(
        st.tuples(st.just(False), wire_inputs()),  # before CONNECT
        st.tuples(st.just(True), wire_inputs()),  # after CONNECT: hostile frames
        st.tuples(st.just(True), operation_calls()),  # after CONNECT: operations with arbitrary requests
    )
)
def test_hostile_frames_never_hang_or_break_the_server(
    fuzzed_server: tuple[IpcServer, str, Unexpected], session: tuple[bool, bytes]
) -> None:
    authenticate, data = session
    server, svcuid, unexpected = fuzzed_server
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(server.socket_path))
        if authenticate:
            sock.sendall(connect_message(svcuid))
            (ack,) = MessageDecoder().feed(sock.recv(65536))
            assert RpcMessage.from_event_message(ack).flags & CONNECTION_ACCEPTED
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # our end of stream: the server must finish with us
        assert drain_until_closed(sock), f"the server neither answered nor closed for {data[:80]!r}"
    assert not unexpected.records, [r.getMessage() for r in unexpected.records]


def test_after_the_fuzz_run_the_server_serves_the_real_client(
    fuzzed_server: tuple[IpcServer, str, Unexpected],
) -> None:
    from awsiot.greengrasscoreipc import connect
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    server, svcuid, unexpected = fuzzed_server
    client: Any = GreengrassCoreIPCClientV2(
        client=connect(ipc_socket=str(server.socket_path), authtoken=svcuid, timeout=TIMEOUT)
    )
    try:
        client.publish_to_iot_core_async(topic_name="fuzz/done", qos="1", payload=b"ok").result(TIMEOUT)
        assert client.get_configuration_async(key_path=["accessControl"]).result(TIMEOUT).value
    finally:
        client.close().result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while server.connection_count or server.unauthenticated_count:
        assert time.monotonic() < deadline, "every fuzzed connection is closed"
        time.sleep(0.05)
    assert not unexpected.records
    assert Path(server.socket_path).exists()
