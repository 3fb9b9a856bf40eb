"""A bounded fuzz run over the agent's request validation, without sockets (issue 11): whatever tensors a
PredictRequest holds, decode_inputs answers arrays that fit the model or InvalidRequestError, nothing else.
Fixed budget: 300 derandomised examples per property, no deadline per example (a few seconds in all)."""

from __future__ import annotations

from collections.abc import Iterator
from math import prod

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.backends import RuntimeSettings
from agent.inputs import ShmPolicy, decode_inputs
from agent.models import LoadedModel, ModelRegistry
from agent_client import agent_pb2 as pb
from agent_client.errors import InvalidRequestError
from agent_client.sockets import default_trusted_uids

from ..helpers import write_tiny_model

BUDGET = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SHM = ShmPolicy(default_trusted_uids(), max_bytes=1 << 20)

shapes = st.lists(st.one_of(st.integers(-3, 6), st.integers(-(2**31), 2**31 - 1)), max_size=5)
metadata = st.builds(
    pb.TensorMetadata,
    name=st.one_of(st.sampled_from([b"x", b"", b"y"]), st.binary(max_size=6)),
    data_type=st.integers(-2, 9),
    shape=shapes,
)
handles = st.builds(
    pb.SharedMemoryHandle,
    size=st.one_of(st.integers(0, 64), st.integers(0, 2**64 - 1)),
    offset=st.one_of(st.integers(0, 64), st.integers(0, 2**64 - 1)),
    segment_id=st.one_of(st.integers(0, 2**64 - 1), st.integers(-1, 8).map(abs)),
)


@st.composite
def valid_tensors(draw: st.DrawFn) -> pb.Tensor:
    """What the tiny models take: input x (or unnamed), float32, [n, 4], with 16 n bytes."""
    rows = draw(st.integers(1, 3))
    meta = pb.TensorMetadata(name=draw(st.sampled_from([b"x", b""])), data_type=pb.FLOAT32, shape=[rows, 4])
    return pb.Tensor(tensor_metadata=meta, byte_data=draw(st.binary(min_size=16 * rows, max_size=16 * rows)))


@st.composite
def near_valid_tensors(draw: st.DrawFn) -> pb.Tensor:
    """Neighbours of what the tiny models take (negative or zero sizes, a dimension more or less), usually
    with as many bytes as the shape's size says."""
    rows = draw(st.integers(-2, 3))
    shape = draw(st.sampled_from([[rows, 4], [rows, 4], [rows, -4], [rows, 0], [rows], [rows, 4, 1]]))
    meta = pb.TensorMetadata(name=draw(st.sampled_from([b"x", b""])), data_type=pb.FLOAT32, shape=shape)
    size = abs(prod(shape)) * 4
    data = draw(st.one_of(st.binary(min_size=size, max_size=size), st.binary(max_size=64)))
    return pb.Tensor(tensor_metadata=meta, byte_data=data)


@st.composite
def random_tensors(draw: st.DrawFn) -> pb.Tensor:
    tensor = pb.Tensor()
    if draw(st.booleans()):
        tensor.tensor_metadata.CopyFrom(draw(metadata))
    kind = draw(st.sampled_from(["bytes", "shm", "none"]))
    if kind == "bytes":
        tensor.byte_data = draw(st.one_of(st.binary(max_size=80), st.sampled_from([b"\0" * 16, b"\0" * 48])))
    elif kind == "shm":
        tensor.shared_memory_handle.CopyFrom(draw(handles))
    return tensor


tensors = st.one_of(valid_tensors(), near_valid_tensors(), random_tensors())
requests = st.one_of(tensors.map(lambda t: [t]), st.lists(tensors, max_size=3))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LoadedModel]]:
    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root / "fixed")
    write_tiny_model(root / "dynamic", batch="N")
    registry = ModelRegistry([root], RuntimeSettings(threads=1), default_trusted_uids())
    yield {name: registry.load(name, name) for name in ("fixed", "dynamic")}
    registry.unload_all()


@BUDGET
@given(model=st.sampled_from(["fixed", "dynamic"]), request=requests)
def test_decode_inputs_answers_arrays_that_fit_or_invalid_request(
    models: dict[str, LoadedModel], model: str, request: list[pb.Tensor]
) -> None:
    loaded = models[model]
    try:
        with decode_inputs(loaded, request, SHM) as decoded:
            for info in loaded.session.inputs:
                array = decoded.arrays[info.name]
                assert array.dtype == info.dtype and info.accepts_shape(array.shape)
                assert all(d > 0 for d in array.shape)
            outputs = loaded.session.run(decoded.arrays)  # what passes validation, the runtime takes
            assert outputs[0].shape == decoded.arrays["x"].shape
    except InvalidRequestError as exc:
        assert str(exc)
