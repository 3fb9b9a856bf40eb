"""The `AWS.SageMaker.Edge.Agent` gRPC service: requests in, registry/backends/capture, status codes out.

Failures leave as gRPC status codes with messages that say how to fix the request:
NOT_FOUND (unknown model), ALREADY_EXISTS (name taken), INVALID_ARGUMENT (bad name, path, tensor),
RESOURCE_EXHAUSTED (capture queue full), FAILED_PRECONDITION (capture disabled), INTERNAL (runtime failed).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import numpy as np

from agent_client import agent_pb2 as pb
from agent_client import agent_pb2_grpc
from agent_client.errors import (
    BackendError,
    CaptureDisabledError,
    CaptureQueueFullError,
    EdgeError,
    InvalidRequestError,
    ModelAlreadyLoadedError,
    ModelNotFoundError,
)
from agent_client.tensors import TensorInfo, from_bytes, numpy_dtype

from .datacapture import CaptureWriter
from .models import LoadedModel, ModelRegistry

logger = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[EdgeError], grpc.StatusCode], ...] = (
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (ModelAlreadyLoadedError, grpc.StatusCode.ALREADY_EXISTS),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (CaptureQueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CaptureDisabledError, grpc.StatusCode.FAILED_PRECONDITION),
    (BackendError, grpc.StatusCode.INTERNAL),
)


Request = TypeVar("Request")
Reply = TypeVar("Reply")
Handler = Callable[[Any, Request, grpc.ServicerContext], Reply]


def _rpc(handler: Handler[Request, Reply]) -> Handler[Request, Reply]:
    """Turns the project's errors raised by a handler into gRPC status codes with their message."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: Request, context: grpc.ServicerContext) -> Reply:
        try:
            return handler(self, request, context)
        except EdgeError as exc:
            code = next((c for kind, c in _STATUS if isinstance(exc, kind)), grpc.StatusCode.INTERNAL)
            log = logger.error if code is grpc.StatusCode.INTERNAL else logger.info
            log("%s -> %s: %s", handler.__name__, code.name, exc)
            context.abort(code, str(exc))
            raise AssertionError("context.abort() returned") from exc

    return wrapper


def _model_proto(model: LoadedModel) -> pb.Model:
    return pb.Model(
        url=model.url,
        name=model.name,
        input_tensor_metadatas=[t.to_proto() for t in model.session.inputs],
        output_tensor_metadatas=[t.to_proto() for t in model.session.outputs],
    )


def decode_inputs(model: LoadedModel, tensors: list[pb.Tensor]) -> dict[str, np.ndarray]:
    """Checks each request tensor against the model's inputs and decodes it; InvalidRequestError otherwise.

    Tensors with a named metadata are matched by name; tensors without metadata are taken in input order.
    """
    expected = model.session.inputs
    if len(tensors) != len(expected):
        raise InvalidRequestError(
            f"model {model.name} takes {len(expected)} input tensor(s) "
            f"({', '.join(t.name for t in expected)}), the request has {len(tensors)}"
        )
    by_name = {t.name: t for t in expected}
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        if tensor.WhichOneof("data") != "byte_data":
            raise InvalidRequestError(
                "this agent takes tensors as byte_data; shared_memory_handle is not supported"
            )
        info = expected[index]
        if tensor.HasField("tensor_metadata"):
            meta = tensor.tensor_metadata
            name = meta.name.decode(errors="replace")
            if name:
                if name not in by_name:
                    raise InvalidRequestError(
                        f"model {model.name} has no input named {name!r}; inputs: {', '.join(by_name)}"
                    )
                info = by_name[name]
            dtype = numpy_dtype(meta.data_type)
            if dtype != info.dtype:
                raise InvalidRequestError(
                    f"input {info.name!r} must be {info.dtype}, the request sent {dtype}"
                )
            shape = tuple(meta.shape)
            if not info.accepts_shape(shape):
                raise InvalidRequestError(
                    f"input {info.name!r} must have shape {list(info.shape)}, the request sent {list(shape)}"
                )
            info = TensorInfo(name=info.name, dtype=dtype, shape=shape)
        elif any(d < 0 for d in info.shape):
            raise InvalidRequestError(
                f"input {info.name!r} has dynamic dimensions: send tensor_metadata with a shape"
            )
        if info.name in arrays:
            raise InvalidRequestError(f"input {info.name!r} was sent twice")
        arrays[info.name] = from_bytes(tensor.byte_data, info)
    return arrays


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, registry: ModelRegistry, capture: CaptureWriter | None) -> None:
        self.registry = registry
        self.capture = capture

    @_rpc
    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext) -> pb.PredictResponse:
        model = self.registry.get(request.name)
        outputs = model.session.run(decode_inputs(model, list(request.tensors)))
        return pb.PredictResponse(tensors=[_output_tensor(i, o, model) for i, o in enumerate(outputs)])

    @_rpc
    def LoadModel(self, request: pb.LoadModelRequest, context: grpc.ServicerContext) -> pb.LoadModelResponse:
        return pb.LoadModelResponse(model=_model_proto(self.registry.load(request.url, request.name)))

    @_rpc
    def UnLoadModel(
        self, request: pb.UnLoadModelRequest, context: grpc.ServicerContext
    ) -> pb.UnLoadModelResponse:
        self.registry.unload(request.name)
        return pb.UnLoadModelResponse()

    @_rpc
    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[_model_proto(m) for m in self.registry.all()])

    @_rpc
    def DescribeModel(
        self, request: pb.DescribeModelRequest, context: grpc.ServicerContext
    ) -> pb.DescribeModelResponse:
        return pb.DescribeModelResponse(model=_model_proto(self.registry.get(request.name)))

    @_rpc
    def CaptureData(
        self, request: pb.CaptureDataRequest, context: grpc.ServicerContext
    ) -> pb.CaptureDataResponse:
        if self.capture is None:
            raise CaptureDisabledError(
                "data capture is disabled on this agent; start it with --capture-dir DIR"
            )
        self.capture.submit(request)
        return pb.CaptureDataResponse()

    @_rpc
    def GetCaptureDataStatus(
        self, request: pb.GetCaptureDataStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetCaptureDataStatusResponse:
        status = pb.NOT_FOUND if self.capture is None else self.capture.status(request.capture_id)
        return pb.GetCaptureDataStatusResponse(status=pb.CaptureDataStatus.Name(status))


def _output_tensor(index: int, array: np.ndarray, model: LoadedModel) -> pb.Tensor:
    array = np.ascontiguousarray(array)
    spec = model.session.outputs[index]
    info = TensorInfo(name=spec.name, dtype=array.dtype, shape=tuple(array.shape))
    return pb.Tensor(tensor_metadata=info.to_proto(), byte_data=array.tobytes())
