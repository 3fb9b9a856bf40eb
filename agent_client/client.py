"""Typed client for the agent's gRPC API: numpy in, numpy out, deadlines on every call.

Every call carries a deadline (`timeout`), which the client also enforces itself (gRPC's does not fire
while a large request sits in a full socket buffer, e.g. with a frozen agent); UNAVAILABLE (nothing
listening, agent restarting) is retried a bounded number of times with exponential backoff inside that
deadline, and nothing else is retried.
gRPC status codes become the project's exceptions (see agent_client.errors), each saying what to do.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import numpy as np

from . import agent_pb2 as pb
from . import agent_pb2_grpc
from .errors import (
    AgentError,
    AgentTimeoutError,
    AgentUnavailableError,
    InvalidRequestError,
    ModelAlreadyLoadedError,
    ModelNotFoundError,
)
from .tensors import TensorInfo, from_bytes, to_tensor

logger = logging.getLogger(__name__)

DEFAULT_SOCKET = "/tmp/aws.greengrass.SageMakerEdgeManager.sock"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CLOSE_TIMEOUT_S = 2.0
DEADLINE_GRACE_S = 0.25  # how long past the gRPC deadline the client waits before giving up by itself

Response = TypeVar("Response")


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model as the agent describes it."""

    name: str
    url: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @classmethod
    def from_proto(cls, model: pb.Model) -> ModelInfo:
        return cls(
            name=model.name,
            url=model.url,
            inputs=tuple(TensorInfo.from_proto(m) for m in model.input_tensor_metadatas),
            outputs=tuple(TensorInfo.from_proto(m) for m in model.output_tensor_metadatas),
        )


class CaptureStatus(Enum):
    FAILURE = pb.FAILURE
    SUCCESS = pb.SUCCESS
    IN_PROGRESS = pb.IN_PROGRESS
    NOT_FOUND = pb.NOT_FOUND


@dataclass(frozen=True)
class ClientOptions:
    """timeout: deadline of each call in seconds; retries: extra attempts on UNAVAILABLE only."""

    timeout: float = 5.0
    retries: int = 2
    backoff: float = 0.1
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


def socket_target(socket_path: str | Path) -> str:
    """The gRPC channel address of a unix socket path."""
    return f"unix://{Path(socket_path).absolute()}"


class AgentClient:
    """One channel to one agent. Thread-safe; use as a context manager or call close()."""

    def __init__(
        self, socket_path: str | Path = DEFAULT_SOCKET, options: ClientOptions | None = None
    ) -> None:
        self.socket_path = Path(socket_path)
        self.options = options or ClientOptions()
        self._channel = grpc.insecure_channel(
            socket_target(self.socket_path),
            options=[
                ("grpc.max_send_message_length", self.options.max_message_bytes),
                ("grpc.max_receive_message_length", self.options.max_message_bytes),
                # Reconnect quickly after an agent restart instead of gRPC's default backoff of up to 120 s.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._stub = agent_pb2_grpc.AgentStub(self._channel)

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Closes the connection. gRPC waits for every request it has not finished, and one stuck in a full
        socket buffer (a frozen agent) never finishes, so the wait is bounded and then abandoned."""
        closer = threading.Thread(target=self._channel.close, name="agent-channel-close", daemon=True)
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            logger.warning(
                "the connection to the agent on %s did not close within %g s (a request is stuck: is the "
                "agent process stopped?); leaving it behind",
                self.socket_path,
                timeout,
            )

    def wait_until_ready(self, timeout: float) -> None:
        """Blocks until the agent accepts connections; AgentUnavailableError after timeout seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise AgentUnavailableError(
                f"no agent answered on {self.socket_path} within {timeout:g} s; start it with "
                f"`python -m agent --socket {self.socket_path} --models-root DIR` or check the socket path"
            ) from None

    # -- model management -------------------------------------------------------------------------------

    def load_model(self, url: str | Path, name: str) -> ModelInfo:
        """Loads the model folder `url` under `name`; ModelAlreadyLoadedError if the name is taken."""
        reply = self._call(
            self._stub.LoadModel, pb.LoadModelRequest(url=str(url), name=name), f"LoadModel {name}"
        )
        return ModelInfo.from_proto(reply.model)

    def unload_model(self, name: str) -> None:
        self._call(self._stub.UnLoadModel, pb.UnLoadModelRequest(name=name), f"UnLoadModel {name}")

    def list_models(self) -> tuple[ModelInfo, ...]:
        reply = self._call(self._stub.ListModels, pb.ListModelsRequest(), "ListModels")
        return tuple(ModelInfo.from_proto(m) for m in reply.models)

    def describe_model(self, name: str) -> ModelInfo:
        reply = self._call(
            self._stub.DescribeModel, pb.DescribeModelRequest(name=name), f"DescribeModel {name}"
        )
        return ModelInfo.from_proto(reply.model)

    # -- inference ----------------------------------------------------------------------------------------

    def predict(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[TensorInfo] | None = None,
    ) -> tuple[np.ndarray, ...]:
        """Runs model `name` on named input arrays; returns its outputs in model order.

        Outputs are decoded from the metadata the agent sends; `outputs` (from describe_model) is used for
        agents that send bare bytes.
        """
        request = pb.PredictRequest(name=name, tensors=[to_tensor(k, v) for k, v in inputs.items()])
        reply = self._call(self._stub.Predict, request, f"Predict {name}")
        return tuple(_decode_output(i, tensor, outputs) for i, tensor in enumerate(reply.tensors))

    def capture_data(
        self,
        model_name: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        capture_id: str | None = None,
        inference_time: float | None = None,
    ) -> str:
        """Queues one inference's tensors for capture on the agent; returns the capture id."""
        capture_id = capture_id or str(uuid.uuid4())
        seconds = time.time() if inference_time is None else inference_time
        request = pb.CaptureDataRequest(
            model_name=model_name,
            capture_id=capture_id,
            inference_timestamp=pb.Timestamp(seconds=int(seconds), nanos=int((seconds % 1) * 1e9)),
            input_tensors=[to_tensor(k, v) for k, v in inputs.items()],
            output_tensors=[to_tensor(k, v) for k, v in outputs.items()],
        )
        self._call(self._stub.CaptureData, request, f"CaptureData {capture_id}")
        return capture_id

    def capture_status(self, capture_id: str) -> CaptureStatus:
        reply = self._call(
            self._stub.GetCaptureDataStatus,
            pb.GetCaptureDataStatusRequest(capture_id=capture_id),
            f"GetCaptureDataStatus {capture_id}",
        )
        return CaptureStatus(reply.status)

    # -- plumbing -----------------------------------------------------------------------------------------

    def _call(self, method: Callable[..., Response], request: Any, what: str) -> Response:
        deadline = time.monotonic() + self.options.timeout
        attempt = 0
        while True:
            remaining = max(deadline - time.monotonic(), 0.001)
            # gRPC's own deadline does not fire while a large request is stuck in a full socket buffer (an
            # agent that is frozen or swapping), so the wait for the answer is bounded here as well.
            future = cast(Any, method).future(request, timeout=remaining)
            try:
                return cast(Response, future.result(timeout=remaining + DEADLINE_GRACE_S))
            except grpc.FutureTimeoutError:
                future.cancel()
                raise AgentTimeoutError(
                    f"{what}: the agent did not answer within {self.options.timeout:g} s (the request could "
                    f"not even be sent: is the agent process stopped or starved?)"
                ) from None
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
                pause = self.options.backoff * 2**attempt
                if (
                    code is grpc.StatusCode.UNAVAILABLE
                    and attempt < self.options.retries
                    and remaining > pause
                ):
                    logger.debug("%s: agent unavailable, retry %d in %.2f s", what, attempt + 1, pause)
                    time.sleep(pause)
                    attempt += 1
                    continue
                raise self._translate(exc, code, what) from exc

    def _translate(self, exc: grpc.RpcError, code: grpc.StatusCode, what: str) -> AgentError:
        details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
        if code is grpc.StatusCode.UNAVAILABLE:
            return AgentUnavailableError(
                f"{what}: no agent reachable on {self.socket_path} ({details}); is the agent running? "
                f"The client retries; check UnixSocketName/AgentSocket if this persists"
            )
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return AgentTimeoutError(
                f"{what}: the agent did not answer within {self.options.timeout:g} s; "
                f"it may be overloaded: raise RpcTimeoutSeconds or lower the frame rate"
            )
        if code is grpc.StatusCode.NOT_FOUND:
            return ModelNotFoundError(f"{what}: {details}")
        if code is grpc.StatusCode.ALREADY_EXISTS:
            return ModelAlreadyLoadedError(f"{what}: {details}")
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            return InvalidRequestError(
                f"{what}: message too large for the agent or the client ({details}); "
                f"send smaller tensors or raise the agent's --max-message-mb"
            )
        if code in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.UNIMPLEMENTED,
        ):
            return InvalidRequestError(f"{what}: {details}")
        return AgentError(f"{what}: agent error {code.name}: {details}")


def _decode_output(index: int, tensor: pb.Tensor, fallback: Sequence[TensorInfo] | None) -> np.ndarray:
    if tensor.HasField("tensor_metadata") and tensor.tensor_metadata.shape:
        info = TensorInfo.from_proto(tensor.tensor_metadata)
    elif fallback is not None and index < len(fallback):
        info = fallback[index]
    else:
        raise InvalidRequestError(
            f"output {index} came without metadata; pass outputs=describe_model(name).outputs to predict()"
        )
    if tensor.WhichOneof("data") != "byte_data":
        raise InvalidRequestError(f"output {info.name!r} did not come as byte_data")
    return from_bytes(tensor.byte_data, info)
