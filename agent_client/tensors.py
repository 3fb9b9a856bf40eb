"""Tensor wire format: numpy arrays <-> `Tensor` / `TensorMetadata` messages.

A tensor travels as raw C-order bytes (native little-endian on every supported device), in `byte_data` or
in a System V shared memory segment named by `shared_memory_handle` (agent_client.shm), described by
`TensorMetadata(name, data_type, shape)`. The byte length must equal prod(shape) * itemsize(data_type);
both sides check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from . import agent_pb2 as pb
from .errors import InvalidRequestError

DTYPE_BY_WIRE: dict[int, np.dtype] = {
    pb.UINT8: np.dtype(np.uint8),
    pb.INT16: np.dtype(np.int16),
    pb.INT32: np.dtype(np.int32),
    pb.INT64: np.dtype(np.int64),
    pb.FLOAT16: np.dtype(np.float16),
    pb.FLOAT32: np.dtype(np.float32),
    pb.FLOAT64: np.dtype(np.float64),
}
WIRE_BY_DTYPE: dict[np.dtype, int] = {dtype: wire for wire, dtype in DTYPE_BY_WIRE.items()}


@dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape of a model input or output. A dimension of -1 accepts any size."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(
            want < 0 or want == got for want, got in zip(self.shape, shape, strict=True)
        )

    def to_proto(self) -> pb.TensorMetadata:
        return pb.TensorMetadata(
            name=self.name.encode(), data_type=pb.DataType.Name(wire_type(self.dtype)), shape=list(self.shape)
        )

    @classmethod
    def from_proto(cls, meta: pb.TensorMetadata) -> TensorInfo:
        return cls(
            name=meta.name.decode(errors="replace"),
            dtype=numpy_dtype(meta.data_type),
            shape=tuple(meta.shape),
        )


def wire_type(dtype: np.dtype | type) -> int:
    """The DataType enum value for a numpy dtype; InvalidRequestError for types the API cannot carry."""
    try:
        return WIRE_BY_DTYPE[np.dtype(dtype)]
    except KeyError:
        names = ", ".join(str(d) for d in WIRE_BY_DTYPE)
        raise InvalidRequestError(
            f"dtype {np.dtype(dtype)} cannot be sent to the agent; use one of {names}"
        ) from None


def numpy_dtype(wire: int) -> np.dtype:
    try:
        return DTYPE_BY_WIRE[wire]
    except KeyError:
        raise InvalidRequestError(
            f"unknown tensor data_type {wire}; expected 0..6 (UINT8..FLOAT64)"
        ) from None


def to_tensor(name: str, array: np.ndarray) -> pb.Tensor:
    """Encodes an array as a Tensor with full metadata and C-order bytes."""
    array = np.ascontiguousarray(array)
    meta = TensorInfo(name=name, dtype=array.dtype, shape=tuple(array.shape)).to_proto()
    return pb.Tensor(tensor_metadata=meta, byte_data=array.tobytes())


def from_bytes(data: bytes, info: TensorInfo) -> np.ndarray:
    """Decodes C-order bytes described by info; InvalidRequestError when the length does not fit the shape."""
    expected = prod(info.shape) * info.dtype.itemsize
    if len(data) != expected:
        raise InvalidRequestError(
            f"tensor {info.name!r}: {len(data)} bytes do not fit shape {list(info.shape)} of {info.dtype} "
            f"({expected} bytes expected)"
        )
    return np.frombuffer(data, dtype=info.dtype).reshape(info.shape)


def to_shared_memory_tensor(name: str, array: np.ndarray, segment_id: int, offset: int) -> pb.Tensor:
    """A Tensor with full metadata whose bytes the caller has put at offset in System V segment segment_id
    (agent_client.shm)."""
    meta = TensorInfo(name=name, dtype=array.dtype, shape=tuple(array.shape)).to_proto()
    handle = pb.SharedMemoryHandle(size=array.nbytes, offset=offset, segment_id=segment_id)
    return pb.Tensor(tensor_metadata=meta, shared_memory_handle=handle)
