"""The typed client against the real agent over a unix socket: all seven RPCs and the bad inputs."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.server import AgentServer
from agent_client import AgentClient, CaptureStatus, ClientOptions, agent_pb2_grpc
from agent_client import agent_pb2 as pb
from agent_client.client import socket_target
from agent_client.errors import (
    AgentUnavailableError,
    InvalidRequestError,
    ModelAlreadyLoadedError,
    ModelNotFoundError,
)

pytestmark = pytest.mark.integration


def test_load_describe_list_predict_unload_round_trip(client: AgentClient, models_root: Path) -> None:
    info = client.load_model(models_root / "tiny", "tiny")
    assert info.name == "tiny"
    assert [(t.name, str(t.dtype), t.shape) for t in info.inputs] == [("x", "float32", (1, 4))]
    assert [(t.name, str(t.dtype), t.shape) for t in info.outputs] == [("y", "float32", (1, 4))]
    assert client.describe_model("tiny") == info
    assert [m.name for m in client.list_models()] == ["tiny"]

    (y,) = client.predict("tiny", {"x": np.array([[0, 1, 2, 3]], dtype=np.float32)})
    np.testing.assert_array_equal(y, [[1, 3, 5, 7]])

    client.unload_model("tiny")
    assert client.list_models() == ()
    with pytest.raises(ModelNotFoundError, match="LoadModel"):
        client.predict("tiny", {"x": np.zeros((1, 4), np.float32)})


def test_relative_url_resolves_under_the_models_root_and_is_reported_resolved(
    client: AgentClient, models_root: Path
) -> None:
    assert client.load_model("tiny", "rel").url == str((models_root / "tiny").resolve())


def test_dynamic_batch_takes_any_batch_size(client: AgentClient, models_root: Path) -> None:
    info = client.load_model(models_root / "tiny-dynamic", "dyn")
    assert info.inputs[0].shape == (-1, 4)
    (y,) = client.predict("dyn", {"x": np.ones((3, 4), np.float32)})
    assert y.shape == (3, 4)


def test_loading_a_name_again_from_the_same_resolved_folder_returns_the_loaded_model(
    client: AgentClient, models_root: Path
) -> None:
    first = client.load_model(models_root / "tiny", "tiny")
    (models_root / "alias").symlink_to(models_root / "tiny")  # another spelling of the same folder
    for url in (models_root / "tiny", "tiny", models_root / "alias", "sub/../tiny"):
        assert client.load_model(url, "tiny") == first
    assert [m.name for m in client.list_models()] == ["tiny"]


def test_loading_a_taken_name_from_another_folder_names_both_folders(
    client: AgentClient, models_root: Path
) -> None:
    client.load_model(models_root / "tiny", "tiny")
    with pytest.raises(ModelAlreadyLoadedError) as err:
        client.load_model(models_root / "tiny-dynamic", "tiny")
    message = str(err.value)
    assert str((models_root / "tiny").resolve()) in message
    assert str((models_root / "tiny-dynamic").resolve()) in message
    assert "UnLoadModel 'tiny' first or pick another name" in message


@pytest.mark.parametrize("name", ["", "-lead", "trail-", "has space", "under_score", "dot.ted"])
def test_invalid_model_names_are_rejected(client: AgentClient, models_root: Path, name: str) -> None:
    with pytest.raises(InvalidRequestError, match="model name"):
        client.load_model(models_root / "tiny", name)


def test_paths_outside_the_models_root_are_rejected(
    client: AgentClient, models_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for url in (str(outside), "../elsewhere", "tiny/../../elsewhere"):
        with pytest.raises(InvalidRequestError, match="outside the models root"):
            client.load_model(url, "m")
    link = models_root / "link"
    link.symlink_to(outside)
    with pytest.raises(InvalidRequestError, match="outside the models root"):
        client.load_model("link", "m")


def test_missing_folder_and_unrecognised_folder_say_what_is_wrong(
    client: AgentClient, models_root: Path
) -> None:
    with pytest.raises(InvalidRequestError, match="does not exist"):
        client.load_model("nope", "m")
    (models_root / "empty").mkdir()
    with pytest.raises(InvalidRequestError, match=r"has no manifest.json.*python -m modelprep manifest"):
        client.load_model("empty", "m")


def test_unknown_model_is_not_found_on_every_call(client: AgentClient) -> None:
    for call in (
        lambda: client.describe_model("ghost"),
        lambda: client.unload_model("ghost"),
        lambda: client.predict("ghost", {"x": np.zeros((1, 4), np.float32)}),
    ):
        with pytest.raises(ModelNotFoundError, match="ghost"):
            call()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.zeros((1, 5), np.float32)}, r"shape \[1, 4\]"),
        ({"x": np.zeros((4,), np.float32)}, r"shape \[1, 4\]"),
        ({"x": np.zeros((1, 4), np.float64)}, "must be float32"),
        ({"z": np.zeros((1, 4), np.float32)}, "no input named 'z'"),
        ({"x": np.zeros((1, 4), np.float32), "w": np.zeros((1, 4), np.float32)}, "takes 1 input"),
        ({}, "takes 1 input"),
    ],
)
def test_bad_tensors_are_invalid_argument(
    client: AgentClient, models_root: Path, inputs: dict[str, np.ndarray], message: str
) -> None:
    client.load_model(models_root / "tiny", "tiny")
    with pytest.raises(InvalidRequestError, match=message):
        client.predict("tiny", inputs)


def _raw_stub(agent: AgentServer) -> tuple[grpc.Channel, agent_pb2_grpc.AgentStub]:
    channel = grpc.insecure_channel(socket_target(agent.options.socket))
    return channel, agent_pb2_grpc.AgentStub(channel)


def test_byte_length_must_match_the_shape(agent: AgentServer, client: AgentClient, models_root: Path) -> None:
    client.load_model(models_root / "tiny", "tiny")
    channel, stub = _raw_stub(agent)
    meta = pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4])
    with channel, pytest.raises(grpc.RpcError) as err:
        stub.Predict(
            pb.PredictRequest(name="tiny", tensors=[pb.Tensor(tensor_metadata=meta, byte_data=b"\0" * 15)]),
            timeout=5,
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "15 bytes do not fit shape [1, 4]" in err.value.details()


def test_tensor_without_metadata_uses_the_models_input(
    agent: AgentServer, client: AgentClient, models_root: Path
) -> None:
    """As the original agent: metadata is optional in a request; outputs come back with metadata."""
    client.load_model(models_root / "tiny", "tiny")
    channel, stub = _raw_stub(agent)
    data = np.arange(4, dtype=np.float32).tobytes()
    with channel:
        reply = stub.Predict(pb.PredictRequest(name="tiny", tensors=[pb.Tensor(byte_data=data)]), timeout=5)
    (out,) = reply.tensors
    assert out.tensor_metadata.name == b"y" and list(out.tensor_metadata.shape) == [1, 4]
    np.testing.assert_array_equal(np.frombuffer(out.byte_data, np.float32), [1, 3, 5, 7])


def test_a_tensor_without_data_is_refused_as_such(
    agent: AgentServer, client: AgentClient, models_root: Path
) -> None:
    """Before: "this agent takes tensors as byte_data; shared_memory_handle is not supported"."""
    client.load_model(models_root / "tiny", "tiny")
    channel, stub = _raw_stub(agent)
    meta = pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4])
    with channel, pytest.raises(grpc.RpcError) as err:
        stub.Predict(pb.PredictRequest(name="tiny", tensors=[pb.Tensor(tensor_metadata=meta)]), timeout=5)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == (
        "input 'x' carries no data: set byte_data (the raw C-order bytes) or shared_memory_handle "
        "(a System V segment)"
    )


def test_oversized_message_is_refused_with_a_hint(client: AgentClient, models_root: Path) -> None:
    client.load_model(models_root / "tiny-dynamic", "dyn")
    huge = np.zeros((300_000, 4), np.float32)  # 4.8 MB against the fixture's 4 MiB limit
    with pytest.raises(InvalidRequestError, match="max-message-mb"):
        client.predict("dyn", {"x": huge})
    (y,) = client.predict("dyn", {"x": np.zeros((2, 4), np.float32)})  # the agent is still fine
    assert y.shape == (2, 4)


def test_capture_data_is_written_to_disk_with_a_sidecar(client: AgentClient, agent: AgentServer) -> None:
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    capture_id = client.capture_data("tiny", {"x": x}, {"y": 2 * x + 1}, inference_time=1700000000.25)
    deadline = time.monotonic() + 5
    while client.capture_status(capture_id) is CaptureStatus.IN_PROGRESS and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.capture_status(capture_id) is CaptureStatus.SUCCESS
    assert agent.options.capture_dir is not None
    folder = agent.options.capture_dir / "tiny" / capture_id
    sidecar = json.loads((folder / "capture.json").read_text())
    assert sidecar["inference_timestamp"] == {"seconds": 1700000000, "nanos": 250000000}
    assert [(t["role"], t["name"], t["shape"]) for t in sidecar["tensors"]] == [
        ("input", "x", [1, 4]),
        ("output", "y", [1, 4]),
    ]
    np.testing.assert_array_equal(np.load(folder / "input-0.npy"), x)
    np.testing.assert_array_equal(np.load(folder / "output-0.npy"), 2 * x + 1)


def test_capture_status_of_unknown_id_is_not_found_and_ids_are_single_use(client: AgentClient) -> None:
    assert client.capture_status("never-sent") is CaptureStatus.NOT_FOUND
    x = np.zeros((1, 4), np.float32)
    client.capture_data("tiny", {"x": x}, {}, capture_id="same-id")
    with pytest.raises(InvalidRequestError, match="already used"):
        client.capture_data("tiny", {"x": x}, {}, capture_id="same-id")
    with pytest.raises(InvalidRequestError, match="capture_id"):
        client.capture_data("tiny", {"x": x}, {}, capture_id="../escape")


def test_socket_is_owner_only_and_health_says_serving(agent: AgentServer) -> None:
    mode = os.stat(agent.options.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    with grpc.insecure_channel(socket_target(agent.options.socket)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "AWS.SageMaker.Edge.Agent"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_predicts_sent_ahead_answer_as_predict_does_two_at_a_time(
    client: AgentClient, models_root: Path
) -> None:
    client.load_model(models_root / "tiny-dynamic", "dyn")
    a, b = np.arange(4, dtype=np.float32).reshape(1, 4), np.ones((3, 4), np.float32)
    first, second = client.send_predict("dyn", {"x": a}), client.send_predict("dyn", {"x": b})
    (y_b,), (y_a,) = second.result(), first.result()
    np.testing.assert_array_equal(y_a, client.predict("dyn", {"x": a})[0])
    np.testing.assert_array_equal(y_b, client.predict("dyn", {"x": b})[0])
    with pytest.raises(ModelNotFoundError):
        client.send_predict("nope", {"x": a}).result()  # errors come from result(), translated alike


def test_a_predict_sent_ahead_knows_when_it_was_answered_not_when_it_was_taken(
    client: AgentClient, models_root: Path
) -> None:
    client.load_model(models_root / "tiny-dynamic", "dyn")
    sent_at = time.perf_counter()
    sent = client.send_predict("dyn", {"x": np.ones((1, 4), np.float32)})
    time.sleep(0.5)  # the loop busy with the frame before
    sent.result()
    assert sent.answered_at is not None and sent.answered_at - sent_at < 0.25


def test_a_predict_sent_ahead_with_nothing_listening_is_unavailable_within_the_deadline(
    socket_path: Path,
) -> None:
    with AgentClient(socket_path, ClientOptions(timeout=1.0, retries=2, backoff=0.05)) as c:
        started = time.monotonic()
        sent = c.send_predict("m", {"x": np.zeros((1, 4), np.float32)})
        with pytest.raises(AgentUnavailableError, match="is the agent running"):
            sent.result()
        assert time.monotonic() - started < 3.0


def test_nothing_listening_is_unavailable_within_the_deadline(socket_path: Path) -> None:
    with AgentClient(socket_path, ClientOptions(timeout=1.0, retries=2, backoff=0.05)) as c:
        started = time.monotonic()
        with pytest.raises(AgentUnavailableError, match="is the agent running"):
            c.list_models()
        assert time.monotonic() - started < 3.0  # the 1 s deadline holds, with slack
        with pytest.raises(AgentUnavailableError, match="python -m agent"):
            c.wait_until_ready(0.2)
