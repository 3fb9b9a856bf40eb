"""Shared memory tensors (issue 12 and the Edge Manager contract): System V segments attached read-only,
checked for owner, mode and bounds; the client's own segment is private and never outlives it. Real
segments, a real agent over a unix socket."""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient, ClientOptions, agent_pb2_grpc, shm
from agent_client import agent_pb2 as pb
from agent_client.client import socket_target
from agent_client.errors import AgentBusyError, InvalidRequestError

from ..agent_fixtures import other_uid
from ..helpers import ROOT

pytestmark = pytest.mark.integration

IPC_SET = 1


def segments() -> dict[int, tuple[int, int]]:
    """Live System V segments: id -> (octal perms, owner uid), from the kernel's table."""
    rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(r.split()[1]): (int(r.split()[2], 8), int(r.split()[7])) for r in rows}


class Segment:
    """A segment made by the test (not by the client under test), filled with data."""

    def __init__(self, data: bytes, mode: int = 0o600, size: int | None = None) -> None:
        libc = shm.libc()
        self.segment_id = libc.shmget(shm.IPC_PRIVATE, size or len(data), shm.IPC_CREAT | mode)
        assert self.segment_id >= 0
        self.address = libc.shmat(self.segment_id, None, 0)
        ctypes.memmove(self.address, data, len(data))

    def give_to(self, uid: int) -> None:
        buffer = ctypes.create_string_buffer(256)
        assert shm.libc().shmctl(self.segment_id, shm.IPC_STAT, buffer) == 0
        struct.pack_into("<I", buffer, 4, uid)
        assert shm.libc().shmctl(self.segment_id, IPC_SET, buffer) == 0

    def remove(self) -> None:
        shm.libc().shmdt(self.address)
        shm.libc().shmctl(self.segment_id, shm.IPC_RMID, None)


@pytest.fixture
def stub(agent: AgentServer, client: AgentClient, models_root: Path) -> Iterator[agent_pb2_grpc.AgentStub]:
    client.load_model(models_root / "tiny", "tiny")
    with grpc.insecure_channel(socket_target(agent.options.socket)) as channel:
        yield agent_pb2_grpc.AgentStub(channel)


X = np.arange(4, dtype=np.float32).reshape(1, 4)
META = pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4])


def _predict(
    stub: agent_pb2_grpc.AgentStub, segment_id: int, offset: int = 0, size: int = 16
) -> pb.PredictResponse:
    handle = pb.SharedMemoryHandle(segment_id=segment_id, offset=offset, size=size)
    tensor = pb.Tensor(tensor_metadata=META, shared_memory_handle=handle)
    return stub.Predict(pb.PredictRequest(name="tiny", tensors=[tensor]), timeout=5)


def test_the_agent_reads_a_tensor_from_a_segment_at_an_offset(stub: agent_pb2_grpc.AgentStub) -> None:
    segment = Segment(b"\0" * 64 + X.tobytes())
    try:
        (out,) = _predict(stub, segment.segment_id, offset=64).tensors
    finally:
        segment.remove()
    np.testing.assert_array_equal(np.frombuffer(out.byte_data, np.float32), [1, 3, 5, 7])


@pytest.mark.parametrize(
    ("make", "offset", "size", "problem"),
    [
        (lambda: Segment(X.tobytes(), mode=0o666), 0, 16, "is writable by other users"),
        (lambda: Segment(X.tobytes(), mode=0o620), 0, 16, "is writable by other users"),
        (lambda: Segment(X.tobytes()), 8, 16, "exceeds segment"),
        (lambda: Segment(X.tobytes()), 2**63, 16, "exceeds segment"),
        (lambda: Segment(X.tobytes()), 0, 12, "takes 16"),
    ],
)
def test_segments_others_could_write_and_handles_out_of_bounds_are_refused(
    stub: agent_pb2_grpc.AgentStub, make: object, offset: int, size: int, problem: str
) -> None:
    assert callable(make)
    segment = make()
    try:
        with pytest.raises(grpc.RpcError) as err:
            _predict(stub, segment.segment_id, offset, size)
    finally:
        segment.remove()
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert problem in err.value.details()


def test_a_segment_of_another_user_is_refused(stub: agent_pb2_grpc.AgentStub) -> None:
    segment = Segment(X.tobytes())
    segment.give_to(other_uid())
    try:
        with pytest.raises(grpc.RpcError) as err:
            _predict(stub, segment.segment_id)
    finally:
        segment.remove()
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"belongs to uid {other_uid()}" in err.value.details() and "--trusted-uid" in err.value.details()


def test_a_segment_that_does_not_exist_is_refused(stub: agent_pb2_grpc.AgentStub) -> None:
    segment = Segment(X.tobytes())
    segment.remove()
    with pytest.raises(grpc.RpcError) as err:
        _predict(stub, segment.segment_id)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot be attached" in err.value.details()


def test_the_client_sends_large_tensors_through_its_private_segment(
    agent: AgentServer, models_root: Path
) -> None:
    before = set(segments())
    options = ClientOptions(timeout=5, shm_threshold_bytes=1024)
    with AgentClient(agent.options.socket, options) as client:
        client.load_model(models_root / "tiny-dynamic", "dyn")
        x = np.random.default_rng(1).standard_normal((1000, 4)).astype(np.float32)
        (y,) = client.predict("dyn", {"x": x})
        np.testing.assert_array_equal(y, 2 * x + 1)
        (small,) = client.predict("dyn", {"x": X})  # below the threshold: byte_data
        np.testing.assert_array_equal(small, 2 * X + 1)
        mine = {k: v for k, v in segments().items() if k not in before}
        assert list(mine.values()) == [
            (0o600 | 0o1000, os.geteuid())
        ]  # owner-only, already marked for removal
    assert not set(segments()) - before  # detached on close: the kernel removed it


def test_a_shared_memory_tensor_larger_than_a_message_is_refused(
    agent: AgentServer, models_root: Path
) -> None:
    with AgentClient(agent.options.socket, ClientOptions(timeout=5, shm_threshold_bytes=1024)) as client:
        client.load_model(models_root / "tiny-dynamic", "dyn")
        with pytest.raises(InvalidRequestError, match="larger than the agent takes"):
            client.predict("dyn", {"x": np.zeros((300_000, 4), np.float32)})  # 4.8 MB, the limit is 4 MiB


def test_a_client_killed_with_sigkill_leaves_no_segment(agent: AgentServer, models_root: Path) -> None:
    script = (
        "import os, signal, sys, numpy as np\n"
        "from agent_client import AgentClient, ClientOptions\n"
        "client = AgentClient(sys.argv[1], ClientOptions(timeout=5, shm_threshold_bytes=1))\n"
        "client.load_model(sys.argv[2], 'dyn')\n"
        "client.predict('dyn', {'x': np.ones((8, 4), np.float32)})\n"
        "print(client._shm._segment.segment_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(agent.options.socket), str(models_root / "tiny-dynamic")],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert int(done.stdout) not in segments()


def test_shared_memory_bytes_count_against_the_in_flight_budget(models_root: Path, socket_path: Path) -> None:
    options = AgentOptions(
        socket=socket_path, models_root=models_root, max_message_bytes=1 << 20, max_inflight_bytes=1 << 20
    )
    server = AgentServer(options)
    server.start()
    try:
        x = np.zeros((16_384, 4), np.float32)  # 256 KiB in shared memory, a message of a few bytes
        with AgentClient(socket_path, ClientOptions(timeout=5, shm_threshold_bytes=1024)) as client:
            client.load_model("tiny-dynamic", "dyn")
            held = server.budget.try_take(900 * 1024)  # what a request running meanwhile would hold
            assert held is not None
            with pytest.raises(AgentBusyError, match="--max-inflight-mb"):
                client.predict("dyn", {"x": x})
            held.release()
            (y,) = client.predict("dyn", {"x": x})
        assert y.shape == x.shape and server.budget.used == 0
    finally:
        server.stop(grace=1.0)
