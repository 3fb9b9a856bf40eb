"""A bounded fuzz run over the agent's request handling through a real agent on a unix socket (issue 11):
whatever Predict, LoadModel, CaptureData, DescribeModel or UnLoadModel request arrives, even bytes that are
no protobuf message, the answer is a result or a proper status code (never UNKNOWN, an uncaught exception,
or INTERNAL, a runtime failure), and the agent goes on serving. Fixed budget: 300 derandomised examples per
RPC (well under 30 s in all)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.server import AgentOptions, AgentServer
from agent_client import agent_pb2 as pb
from agent_client import agent_pb2_grpc
from agent_client.client import socket_target

from ..helpers import write_tiny_model
from ..unit.test_agent_fuzz import BUDGET, requests

pytestmark = pytest.mark.integration

PROPER = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
names = st.one_of(st.sampled_from(["tiny", "dynamic", "ghost", "", "../..", "/abs"]), st.text(max_size=12))
urls = st.one_of(
    st.sampled_from(["tiny", "dynamic", "", "/", "..", "../../etc", "tiny/../..", "tiny/model.onnx", "\0"]),
    st.text(max_size=40),
)


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[agent_pb2_grpc.AgentStub]:
    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root / "tiny")
    write_tiny_model(root / "dynamic", batch="N")
    folder = Path(tempfile.mkdtemp(prefix="gg-", dir="/tmp"))
    capture = tmp_path_factory.mktemp("capture")
    server = AgentServer(AgentOptions(socket=folder / "agent.sock", models_root=root, capture_dir=capture))
    server.start()
    server.registry.load("tiny", "tiny")
    server.registry.load("dynamic", "dynamic")
    with grpc.insecure_channel(socket_target(folder / "agent.sock")) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        stub.raw_predict = channel.unary_unary("/AWS.SageMaker.Edge.Agent/Predict")  # type: ignore[attr-defined]
        yield stub
    server.stop(grace=1.0)
    shutil.rmtree(folder, ignore_errors=True)


def _code(call: object) -> grpc.StatusCode:
    assert callable(call)
    try:
        call()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        assert exc.details(), code
        return code
    return grpc.StatusCode.OK


@BUDGET
@given(name=names, tensors=requests)
def test_predict_answers_a_proper_status(
    stub: agent_pb2_grpc.AgentStub, name: str, tensors: list[pb.Tensor]
) -> None:
    assert _code(lambda: stub.Predict(pb.PredictRequest(name=name, tensors=tensors), timeout=10)) in PROPER


@BUDGET
@given(raw=st.binary(max_size=200))
def test_bytes_that_are_no_message_answer_a_proper_status(stub: agent_pb2_grpc.AgentStub, raw: bytes) -> None:
    assert _code(lambda: stub.raw_predict(raw, timeout=10)) in PROPER  # type: ignore[attr-defined]


@BUDGET
@given(url=urls, name=names, unload=st.booleans())
def test_load_and_unload_answer_a_proper_status(
    stub: agent_pb2_grpc.AgentStub, url: str, name: str, unload: bool
) -> None:
    assert _code(lambda: stub.LoadModel(pb.LoadModelRequest(url=url, name=name), timeout=10)) in PROPER
    assert _code(lambda: stub.DescribeModel(pb.DescribeModelRequest(name=name), timeout=10)) in PROPER
    if unload and name not in ("tiny", "dynamic"):
        assert _code(lambda: stub.UnLoadModel(pb.UnLoadModelRequest(name=name), timeout=10)) in PROPER


auxiliary = st.builds(
    pb.AuxilaryData,
    name=st.text(max_size=8),
    encoding=st.integers(-1, 5),
    byte_data=st.binary(max_size=32),
)


@BUDGET
@given(
    model_name=names,
    capture_id=st.one_of(st.uuids().map(str), st.text(max_size=20)),
    inputs=requests,
    outputs=requests,
    aux=st.lists(auxiliary, max_size=2),
)
def test_capture_data_answers_a_proper_status(
    stub: agent_pb2_grpc.AgentStub,
    model_name: str,
    capture_id: str,
    inputs: list[pb.Tensor],
    outputs: list[pb.Tensor],
    aux: list[pb.AuxilaryData],
) -> None:
    request = pb.CaptureDataRequest(
        model_name=model_name, capture_id=capture_id, input_tensors=inputs, output_tensors=outputs, inputs=aux
    )
    assert _code(lambda: stub.CaptureData(request, timeout=10)) in PROPER
    status = pb.GetCaptureDataStatusRequest(capture_id=capture_id)
    assert _code(lambda: stub.GetCaptureDataStatus(status, timeout=10)) in PROPER


def test_the_agent_still_serves_after_the_fuzz(stub: agent_pb2_grpc.AgentStub) -> None:
    x = np.arange(4, dtype=np.float32)
    meta = pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4])
    reply = stub.Predict(
        pb.PredictRequest(name="tiny", tensors=[pb.Tensor(tensor_metadata=meta, byte_data=x.tobytes())]),
        timeout=10,
    )
    np.testing.assert_array_equal(np.frombuffer(reply.tensors[0].byte_data, np.float32), 2 * x + 1)
