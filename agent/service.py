"""The `AWS.SageMaker.Edge.Agent` gRPC service: requests in, registry/backends/capture, status codes out.

Failures leave as gRPC status codes with messages that say how to fix the request:
NOT_FOUND (unknown model), ALREADY_EXISTS (name taken by another folder or package), ABORTED (the model is
still loading: retry), INVALID_ARGUMENT (bad name, path, tensor), FAILED_PRECONDITION (the package fails its
manifest, capture disabled), RESOURCE_EXHAUSTED (too much in flight, capture queue full), CANCELLED (the
caller went away), INTERNAL (runtime failed).

Abandoned work: a Predict whose caller has gone by the time a worker takes it (deadline passed while it
queued, call cancelled) is not run; one whose caller goes while it runs is stopped where the backend can
(ONNX Runtime: RunOptions.terminate from the call's termination callback).
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
    AgentBusyError,
    BackendError,
    CaptureDisabledError,
    CaptureQueueFullError,
    EdgeError,
    InvalidRequestError,
    ManifestError,
    ModelAlreadyLoadedError,
    ModelLoadingError,
    ModelNotFoundError,
    RequestCancelledError,
)
from agent_client.tensors import TensorInfo

from .backends import Cancellation
from .datacapture import CaptureWriter
from .inputs import ShmPolicy, decode_inputs
from .limits import AgentStats, ByteBudget, Ticket
from .models import LoadedModel, ModelRegistry

logger = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[EdgeError], grpc.StatusCode], ...] = (
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (ModelAlreadyLoadedError, grpc.StatusCode.ALREADY_EXISTS),
    (ModelLoadingError, grpc.StatusCode.ABORTED),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (ManifestError, grpc.StatusCode.FAILED_PRECONDITION),
    (AgentBusyError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CaptureQueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CaptureDisabledError, grpc.StatusCode.FAILED_PRECONDITION),
    (RequestCancelledError, grpc.StatusCode.CANCELLED),
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


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(
        self,
        registry: ModelRegistry,
        capture: CaptureWriter | None,
        shm: ShmPolicy,
        budget: ByteBudget,
        stats: AgentStats,
    ) -> None:
        self.registry = registry
        self.capture = capture
        self.shm = shm
        self.budget = budget
        self.stats = stats

    @_rpc
    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext) -> pb.PredictResponse:
        model = self.registry.get(request.name)
        with decode_inputs(model, request.tensors, self.shm) as inputs:
            ticket = self._admit_shared_bytes(inputs.shared_bytes)
            try:
                cancel = self._cancellation(context)
                self.stats.add("predict_runs")
                try:
                    outputs = model.session.run(inputs.arrays, cancel)
                except RequestCancelledError:
                    self.stats.add("runs_stopped")
                    raise
                # Serialised (copied) before the segments are detached: an output may alias an input.
                return pb.PredictResponse(
                    tensors=[_output_tensor(i, o, model) for i, o in enumerate(outputs)]
                )
            finally:
                if ticket is not None:
                    ticket.release()

    def _admit_shared_bytes(self, size: int) -> Ticket | None:
        """Shared memory tensors arrive in a small message: their bytes join the in-flight budget here."""
        if not size:
            return None
        ticket = self.budget.try_take(size)
        if ticket is None:
            self.stats.add("refused_busy")
            raise AgentBusyError(self.budget.refusal(size))
        return ticket

    def _cancellation(self, context: grpc.ServicerContext) -> Cancellation:
        """A Cancellation set when the call ends; RequestCancelledError if its caller has already gone."""
        cancel = Cancellation()
        if not context.add_callback(cancel.cancel) or not context.is_active():
            self.stats.add("skipped_gone")
            raise RequestCancelledError("the caller went away before the request ran; it was skipped")
        return cancel

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
