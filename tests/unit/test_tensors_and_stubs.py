from __future__ import annotations

import numpy as np
import pytest

from agent_client import agent_pb2 as pb
from agent_client.codegen import stale_files
from agent_client.errors import InvalidRequestError
from agent_client.tensors import TensorInfo, from_bytes, to_tensor, wire_type


def test_generated_stubs_match_agent_proto_and_the_pinned_tools() -> None:
    assert stale_files() == []


def test_wire_numbers_are_the_edge_manager_agents() -> None:
    """Field numbers and enum values that existing Edge Manager clients put on the wire."""
    assert [(f.name, f.number) for f in pb.Tensor.DESCRIPTOR.fields] == [
        ("tensor_metadata", 1),
        ("byte_data", 4),
        ("shared_memory_handle", 5),
    ]
    assert pb.TensorMetadata.DESCRIPTOR.fields_by_name["name"].type == 12  # TYPE_BYTES
    assert [pb.DataType.Name(i) for i in range(7)] == [
        "UINT8",
        "INT16",
        "INT32",
        "INT64",
        "FLOAT16",
        "FLOAT32",
        "FLOAT64",
    ]
    assert [(f.name, f.number) for f in pb.CaptureDataRequest.DESCRIPTOR.fields] == [
        ("model_name", 1),
        ("capture_id", 2),
        ("inference_timestamp", 3),
        ("input_tensors", 4),
        ("output_tensors", 5),
        ("inputs", 6),
        ("outputs", 7),
    ]
    service = pb.DESCRIPTOR.services_by_name["Agent"]
    assert service.full_name == "AWS.SageMaker.Edge.Agent"
    assert sorted(service.methods_by_name) == sorted(
        [
            "Predict",
            "LoadModel",
            "UnLoadModel",
            "ListModels",
            "DescribeModel",
            "CaptureData",
            "GetCaptureDataStatus",
        ]
    )


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64]
)
def test_every_api_dtype_round_trips(dtype: type) -> None:
    array = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    tensor = to_tensor("t", array)
    info = TensorInfo.from_proto(tensor.tensor_metadata)
    assert info == TensorInfo("t", np.dtype(dtype), (2, 3, 4))
    np.testing.assert_array_equal(from_bytes(tensor.byte_data, info), array)


def test_non_contiguous_arrays_are_sent_in_c_order() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4).T
    tensor = to_tensor("t", array)
    np.testing.assert_array_equal(
        from_bytes(tensor.byte_data, TensorInfo.from_proto(tensor.tensor_metadata)), array
    )


def test_unsupported_dtype_names_the_supported_ones() -> None:
    with pytest.raises(InvalidRequestError, match="float32"):
        wire_type(np.complex64)


def test_byte_length_mismatch_is_explained() -> None:
    with pytest.raises(
        InvalidRequestError, match=r"7 bytes do not fit shape \[2\] of float32 \(8 bytes expected\)"
    ):
        from_bytes(b"\0" * 7, TensorInfo("t", np.dtype(np.float32), (2,)))


def test_dynamic_dimensions_accept_any_size_but_not_any_rank() -> None:
    info = TensorInfo("x", np.dtype(np.float32), (-1, 4))
    assert info.accepts_shape((7, 4))
    assert not info.accepts_shape((7, 5))
    assert not info.accepts_shape((1, 7, 4))
