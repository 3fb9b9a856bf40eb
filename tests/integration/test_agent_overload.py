"""Overload and abandoned work (issue 11): a real agent process refuses what is beyond its bounds with
RESOURCE_EXHAUSTED (AgentBusyError) and keeps its memory bounded; an in-process agent skips or stops the work
of callers that have gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient, ClientOptions
from agent_client import agent_pb2 as pb
from agent_client.errors import AgentBusyError, AgentTimeoutError

from ..agent_fixtures import wait_until, write_slow_run_model
from ..helpers import agent_process, write_tiny_model

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class PeakRss:
    """Samples a process's resident memory every 5 ms while in use."""

    def __init__(self, pid: int) -> None:
        self.pid, self.idle = pid, rss_mib(pid)
        self.peak = self.idle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def busy_models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_tiny_model(root / "dyn", batch="N")
    write_slow_run_model(root / "slow")
    return root


def _outcomes(calls: list[Callable[[], object]]) -> list[BaseException | None]:
    def attempt(call: Callable[[], object]) -> BaseException | None:
        try:
            call()
        except BaseException as exc:  # collected for the assertions
            return exc
        return None

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(attempt, calls))


def test_sixteen_concurrent_32_mb_predicts_are_answered_busy_and_the_agent_lives(
    socket_path: Path, busy_models: Path
) -> None:
    """Before: OOM-killed on the device (this run on the code before: all 16 taken, 4 at a time, RSS 76 ->
    1145 MiB; after, with a 32 MiB budget: 8 served, 8 busy, 77 -> 682 MiB)."""
    big = {"x": np.ones((2_000_000, 4), np.float32)}  # 30.5 MiB
    with agent_process(socket_path, busy_models, "--max-inflight-mb", "32") as proc:
        clients = [AgentClient(socket_path, ClientOptions(timeout=60)) for _ in range(16)]
        try:
            clients[0].load_model("dyn", "dyn")
            with PeakRss(proc.pid) as rss:
                results = _outcomes([lambda c=c: c.predict("dyn", big) for c in clients])  # type: ignore[misc]
            (y,) = clients[0].predict("dyn", {"x": np.zeros((1, 4), np.float32)})
        finally:
            for client in clients:
                client.close()
    busy = [r for r in results if isinstance(r, AgentBusyError)]
    print(
        f"16 x 30.5 MiB: {results.count(None)} served, {len(busy)} busy; RSS {rss.idle:.0f} -> {rss.peak:.0f}"
    )
    assert busy and results.count(None) + len(busy) == 16, results
    assert "agent busy" in str(busy[0]) and "--max-inflight-mb" in str(busy[0])
    assert y.shape == (1, 4)
    assert rss.peak - rss.idle < 1536  # bounded by the workers and the budget, not by the callers


def test_a_thousand_concurrent_frames_are_refused_beyond_the_call_limit_with_memory_flat(
    socket_path: Path, busy_models: Path
) -> None:
    """Before: every call queued with its frame (this run on the code before: all 1,000 taken, RSS 88 -> 710
    MiB; after: 14 served, 986 refused, 93 -> 117 MiB)."""
    frame = np.ones((37_632, 4), np.float32)  # the 602 kB of a 224x224 RGB float32 frame
    options = ("--workers", "2", "--max-concurrent-rpcs", "16")
    with (
        agent_process(socket_path, busy_models, *options) as proc,
        AgentClient(socket_path, ClientOptions(timeout=60)) as client,
    ):
        client.load_model("dyn", "dyn")
        client.load_model("slow", "slow")
        channel = grpc.insecure_channel(f"unix://{socket_path}")
        stub_predict = channel.unary_unary(
            "/AWS.SageMaker.Edge.Agent/Predict",
            request_serializer=pb.PredictRequest.SerializeToString,
            response_deserializer=pb.PredictResponse.FromString,
        )
        slow = pb.PredictRequest(
            name="slow", tensors=[pb.Tensor(byte_data=np.zeros(4, np.float32).tobytes())]
        )
        meta = pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=list(frame.shape))
        small = pb.PredictRequest(
            name="dyn", tensors=[pb.Tensor(tensor_metadata=meta, byte_data=frame.tobytes())]
        )
        with PeakRss(proc.pid) as rss:
            busy_workers = [stub_predict.future(slow, timeout=120) for _ in range(2)]
            time.sleep(0.5)  # both workers are in the slow model now
            futures = [stub_predict.future(small, timeout=120) for _ in range(1000)]
            with pytest.raises(AgentBusyError, match="--max-concurrent-rpcs"):
                client.predict("dyn", {"x": np.zeros((1, 4), np.float32)})  # all 16 slots are taken
            codes = [_code(f) for f in futures]
            for f in busy_workers:
                f.result()
        channel.close()
        refused = sum(code is grpc.StatusCode.RESOURCE_EXHAUSTED for code in codes)
        served = codes.count(grpc.StatusCode.OK)
        print(f"1000 frames: {served} served, {refused} refused; RSS {rss.idle:.0f} -> {rss.peak:.0f} MiB")
        assert refused >= 1000 - 16 and codes.count(grpc.StatusCode.OK) + refused == 1000
        assert rss.peak - rss.idle < 200


def _code(future: grpc.Future) -> grpc.StatusCode:
    try:
        future.result()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.fixture
def one_worker(socket_path: Path, busy_models: Path) -> Iterator[AgentServer]:
    server = AgentServer(AgentOptions(socket=socket_path, models_root=busy_models, workers=1, threads=1))
    server.start()
    server.registry.load("slow", "slow")
    server.registry.load("dyn", "dyn")
    yield server
    server.stop(grace=5.0)


def test_a_run_whose_caller_gives_up_is_stopped(one_worker: AgentServer) -> None:
    x = {"x": np.zeros((1, 4), np.float32)}
    with (
        AgentClient(one_worker.options.socket, ClientOptions(timeout=0.5)) as hasty,
        pytest.raises(AgentTimeoutError),
    ):
        hasty.predict("slow", x)
    assert wait_until(lambda: one_worker.stats.get("runs_stopped") == 1, 30)
    with AgentClient(one_worker.options.socket, ClientOptions(timeout=30)) as client:
        (y,) = client.predict("dyn", x)  # the one worker is free again
    assert y.shape == (1, 4)
    assert one_worker.stats.get("predict_runs") == 2


def test_a_call_that_waited_past_its_deadline_is_never_run(one_worker: AgentServer) -> None:
    x = {"x": np.zeros((1, 4), np.float32)}
    socket = one_worker.options.socket
    with (
        AgentClient(socket, ClientOptions(timeout=60)) as patient,
        AgentClient(socket, ClientOptions(timeout=0.3)) as hasty,
    ):
        first = threading.Thread(target=patient.predict, args=("slow", x))
        first.start()
        assert wait_until(lambda: one_worker.stats.get("predict_runs") == 1, 10)
        with pytest.raises(AgentTimeoutError):
            hasty.predict("slow", x)  # queued behind the first, then its caller is gone
        first.join(120)
        time.sleep(0.5)
    assert one_worker.stats.get("predict_runs") == 1
    assert one_worker.stats.get("runs_stopped") == 0
