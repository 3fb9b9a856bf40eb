"""Predict request tensors -> the arrays a model's session takes; InvalidRequestError for anything else.

Tensors whose metadata names an input are matched by name; tensors without metadata are taken in input order
and described by the model's own metadata, as with the original agent. Every dimension must be positive and
the byte length must equal prod(shape) * itemsize. A tensor's data is either
- byte_data: raw C-order bytes, or
- shared_memory_handle: a System V segment (agent_client.shm) attached read-only for this request only,
  accepted when a trusted uid owns it, no one else may write it, offset + size lies inside it, size is the
  tensor's byte length and at most `max_bytes`.
A tensor with neither is refused as such. The arrays of shared memory tensors point into the attached
segments: use them, and copy what must outlive the request, inside `with decode_inputs(...) as inputs:`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import prod
from types import TracebackType

import numpy as np

from agent_client import agent_pb2 as pb
from agent_client.errors import InvalidRequestError
from agent_client.shm import ReadOnlyAttachment, attach_read_only
from agent_client.tensors import TensorInfo, from_bytes, numpy_dtype

from .models import LoadedModel


@dataclass(frozen=True)
class ShmPolicy:
    """Which shared memory segments the agent reads: owned by trusted_uids, tensors of at most max_bytes."""

    trusted_uids: frozenset[int]
    max_bytes: int


@dataclass
class DecodedInputs:
    """The arrays by input name, and the segments they may point into (detached by close())."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attachments: dict[int, ReadOnlyAttachment] = field(default_factory=dict)
    shared_bytes: int = 0  # bytes the arrays read from shared memory

    def close(self) -> None:
        self.arrays = {}
        for attachment in self.attachments.values():
            attachment.detach()
        self.attachments = {}

    def __enter__(self) -> DecodedInputs:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _describe(model: LoadedModel, index: int, tensor: pb.Tensor) -> TensorInfo:
    expected = model.session.inputs
    info = expected[index]
    if not tensor.HasField("tensor_metadata"):
        if any(d < 0 for d in info.shape):
            raise InvalidRequestError(
                f"input {info.name!r} has dynamic dimensions: send tensor_metadata with a shape"
            )
        return info
    meta = tensor.tensor_metadata
    name = meta.name.decode(errors="replace")
    if name:
        by_name = {t.name: t for t in expected}
        if name not in by_name:
            raise InvalidRequestError(
                f"model {model.name} has no input named {name[:200]!r}; inputs: {', '.join(by_name)}"
            )
        info = by_name[name]
    dtype = numpy_dtype(meta.data_type)
    if dtype != info.dtype:
        raise InvalidRequestError(f"input {info.name!r} must be {info.dtype}, the request sent {dtype}")
    shape = tuple(meta.shape)
    if not info.accepts_shape(shape) or any(d <= 0 for d in shape):
        raise InvalidRequestError(
            f"input {info.name!r} must have shape {list(info.shape)} (-1: any positive size), the request "
            f"sent {list(shape)[:16]}"
        )
    return TensorInfo(name=info.name, dtype=dtype, shape=shape)


def _from_shared_memory(
    handle: pb.SharedMemoryHandle, info: TensorInfo, policy: ShmPolicy, decoded: DecodedInputs
) -> np.ndarray:
    expected = prod(info.shape) * info.dtype.itemsize
    if handle.size != expected:
        raise InvalidRequestError(
            f"tensor {info.name!r}: shared_memory_handle.size is {handle.size} bytes, shape "
            f"{list(info.shape)} of {info.dtype} takes {expected}"
        )
    if expected > policy.max_bytes:
        raise InvalidRequestError(
            f"tensor {info.name!r} of {expected} bytes is larger than the agent takes ({policy.max_bytes} "
            f"bytes, --max-message-mb); send smaller batches"
        )
    attachment = decoded.attachments.get(handle.segment_id)
    if attachment is None:
        attachment = attach_read_only(handle.segment_id, policy.trusted_uids)
        decoded.attachments[handle.segment_id] = attachment
    view = attachment.view(handle.offset, handle.size)
    decoded.shared_bytes += expected
    return np.frombuffer(view, dtype=info.dtype).reshape(info.shape)


def decode_inputs(model: LoadedModel, tensors: Sequence[pb.Tensor], shm: ShmPolicy) -> DecodedInputs:
    """Checks each request tensor against the model's inputs and decodes it (see the module docstring)."""
    expected = model.session.inputs
    if len(tensors) != len(expected):
        raise InvalidRequestError(
            f"model {model.name} takes {len(expected)} input tensor(s) "
            f"({', '.join(t.name for t in expected)}), the request has {len(tensors)}"
        )
    decoded = DecodedInputs()
    try:
        for index, tensor in enumerate(tensors):
            info = _describe(model, index, tensor)
            if info.name in decoded.arrays:
                raise InvalidRequestError(f"input {info.name!r} was sent twice")
            kind = tensor.WhichOneof("data")
            if kind == "byte_data":
                decoded.arrays[info.name] = from_bytes(tensor.byte_data, info)
            elif kind == "shared_memory_handle":
                decoded.arrays[info.name] = _from_shared_memory(
                    tensor.shared_memory_handle, info, shm, decoded
                )
            else:
                raise InvalidRequestError(
                    f"input {info.name!r} carries no data: set byte_data (the raw C-order bytes) or "
                    f"shared_memory_handle (a System V segment)"
                )
    except BaseException:
        decoded.close()
        raise
    return decoded
