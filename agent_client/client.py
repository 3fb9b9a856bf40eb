"""Typed client for the agent's gRPC API: numpy in, numpy out, deadlines on every call.

Every call carries a deadline: `ClientOptions.timeout`, or `load_timeout` for LoadModel (loading and
verifying a big package takes longer than a Predict). Unreachable (AgentUnavailableError, retried a bounded
number of times inside the deadline) and slow (AgentTimeoutError and its subclasses, never retried here) are
kept apart; see agent_client.rpc, which also explains the frozen-agent guard and the blocking fast path.
gRPC status codes become the project's exceptions (see agent_client.errors), each saying what to do.

Trust: before the first call, and again whenever the socket file changes (another inode, owner or ctime:
an agent restart, or someone else binding the name), the client checks who serves it
(agent_client.sockets.verify_agent_socket: SO_PEERCRED, socket owner, folder) and raises AgentUntrustedError
without sending anything to an untrusted peer. A socket in a folder every user may write (sticky, like the
Edge Manager default in /tmp) is accepted with one loud warning per client: anyone can take the name while
the agent is down, and gRPC reconnects by itself, so a window remains between the check and gRPC's own
connection; a folder of the agent's own closes it. A folder others may write without the sticky bit is
refused.

Shared memory (ClientOptions.shm_threshold_bytes): a Predict whose tensors hold at least that many bytes
sends them in the client's one System V segment (agent_client.shm: mode 0600, freed by the kernel when the
client and agent have detached, so also at exit) and the request itself stays a few hundred bytes. The
agent must run as the client's user or root to read it. A Predict while another thread's Predict uses the
segment sends byte_data.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from . import agent_pb2 as pb
from . import agent_pb2_grpc
from .errors import AgentUnavailableError, ConfigError, InvalidRequestError
from .rpc import CallPolicy, SentCall, call
from .shm import OwnedSegment
from .sockets import default_trusted_uids, verify_agent_socket
from .tensors import TensorInfo, from_bytes, to_shared_memory_tensor, to_tensor

logger = logging.getLogger(__name__)

DEFAULT_SOCKET = "/tmp/aws.greengrass.SageMakerEdgeManager.sock"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CLOSE_TIMEOUT_S = 2.0
SHM_ALIGN = 64
SHM_GRANULE = 1024 * 1024  # the segment grows in whole MiB

Response = TypeVar("Response")


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model as the agent describes it (url: the resolved model folder)."""

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
    """timeout: deadline of each call in seconds; load_timeout: deadline of LoadModel; retries: extra attempts
    on UNAVAILABLE only, with backoff seconds doubling; trusted_uids: uids allowed to serve the socket (None:
    root and this process's uid); blocking_max_bytes: requests up to this size use the plain blocking call
    (agent_client.rpc); shm_threshold_bytes: Predict tensors of at least this many bytes in all go by shared
    memory (None: never)."""

    timeout: float = 5.0
    load_timeout: float = 60.0
    retries: int = 2
    backoff: float = 0.1
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    trusted_uids: frozenset[int] | None = None
    blocking_max_bytes: int = 64 * 1024
    shm_threshold_bytes: int | None = None

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.load_timeout > 0):
            raise ConfigError(f"client timeouts must be positive, got {self.timeout} and {self.load_timeout}")
        if self.retries < 0 or self.backoff < 0 or self.blocking_max_bytes < 0:
            raise ConfigError("client retries, backoff and blocking_max_bytes must not be negative")
        if self.shm_threshold_bytes is not None and self.shm_threshold_bytes < 1:
            raise ConfigError("shm_threshold_bytes must be positive, or None to never use shared memory")


def socket_target(socket_path: str | Path) -> str:
    """The gRPC channel address of a unix socket path."""
    return f"unix://{Path(socket_path).absolute()}"


class _TrustGuard:
    """Checks who serves the socket whenever the socket file is not the one last verified."""

    def __init__(self, socket_path: Path, trusted_uids: frozenset[int]) -> None:
        self.socket_path = socket_path
        self.trusted_uids = trusted_uids
        self._verified: tuple[int, int, int, int] | None = None
        self._warned = False
        self._lock = threading.Lock()

    def check(self) -> None:
        try:
            info = os.lstat(self.socket_path)
        except OSError:
            return  # nothing there: the call fails as unreachable
        key = (info.st_dev, info.st_ino, info.st_ctime_ns, info.st_uid)
        if key == self._verified:
            return
        with self._lock:
            folder = verify_agent_socket(self.socket_path, self.trusted_uids)
            if folder is None:
                return
            if folder.shared and not self._warned:
                self._warned = True
                logger.warning(
                    "the agent socket %s is in %s, a folder every user may write: another user can take the "
                    "name while the agent is down (each new socket is checked, but prefer a socket folder of "
                    "the agent's own, e.g. /run/edgeclassifier/agent.sock)",
                    self.socket_path,
                    folder.folder,
                )
            self._verified = key


class _SharedMemory:
    """The client's one segment, grown to the largest Predict seen; one Predict uses it at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._segment: OwnedSegment | None = None

    def tensors(self, arrays: Mapping[str, np.ndarray]) -> list[pb.Tensor]:
        """Writes arrays into the segment (caller holds self.lock) and returns their tensors."""
        offsets, end = [], 0
        for array in arrays.values():
            offsets.append(end)
            end += -(-array.nbytes // SHM_ALIGN) * SHM_ALIGN
        if self._segment is None or self._segment.size < end:
            if self._segment is not None:
                self._segment.close()
            self._segment = OwnedSegment(-(-max(end, 1) // SHM_GRANULE) * SHM_GRANULE)
        segment = self._segment
        for offset, array in zip(offsets, arrays.values(), strict=True):
            segment.write(offset, memoryview(array))  # type: ignore[arg-type]
        return [
            to_shared_memory_tensor(name, array, segment.segment_id, offset)
            for (name, array), offset in zip(arrays.items(), offsets, strict=True)
        ]

    def close(self, timeout: float) -> None:
        """Detaches the segment, waiting at most timeout seconds for a Predict using it; one still stuck
        keeps it attached, and the kernel frees it when the process ends (it is marked for removal)."""
        if not self.lock.acquire(timeout=timeout):
            logger.warning(
                "a Predict still uses the shared memory segment; it is freed when the process ends"
            )
            return
        try:
            if self._segment is not None:
                self._segment.close()
                self._segment = None
        finally:
            self.lock.release()


class AgentClient:
    """One channel to one agent. Thread-safe; use as a context manager or call close()."""

    def __init__(
        self, socket_path: str | Path = DEFAULT_SOCKET, options: ClientOptions | None = None
    ) -> None:
        self.socket_path = Path(socket_path)
        self.options = options or ClientOptions()
        trusted = self.options.trusted_uids
        self._trust = _TrustGuard(self.socket_path, default_trusted_uids() if trusted is None else trusted)
        self._shm = _SharedMemory()
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
        """Closes the connection and detaches the shared memory segment. gRPC waits for every request it has
        not finished, and one stuck in a full socket buffer (a frozen agent) never finishes, so the wait is
        bounded and then abandoned."""
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
        self._shm.close(timeout)

    def wait_until_ready(self, timeout: float) -> None:
        """Blocks until a trusted agent accepts connections; AgentUnavailableError after timeout seconds,
        AgentUntrustedError if an untrusted one serves the socket."""
        self._trust.check()
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise AgentUnavailableError(
                f"no agent answered on {self.socket_path} within {timeout:g} s; start it with "
                f"`python -m agent --socket {self.socket_path} --models-root DIR` or check the socket path"
            ) from None
        self._trust.check()

    # -- model management -------------------------------------------------------------------------------

    def load_model(self, url: str | Path, name: str) -> ModelInfo:
        """Loads the model folder `url` under `name` (deadline: load_timeout). Loading a name again from the
        same folder and package returns the loaded model; ModelAlreadyLoadedError if the name is taken by
        another folder or package, ModelLoadingError while it is still loading."""
        reply = self._call(
            self._stub.LoadModel,
            pb.LoadModelRequest(url=str(url), name=name),
            f"LoadModel {name}",
            self.options.load_timeout,
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
        arrays = {key: np.ascontiguousarray(value) for key, value in inputs.items()}
        threshold = self.options.shm_threshold_bytes
        what = f"Predict {name}"
        if (
            threshold is not None
            and sum(a.nbytes for a in arrays.values()) >= threshold
            and self._shm.lock.acquire(blocking=False)
        ):
            try:
                request = pb.PredictRequest(name=name, tensors=self._shm.tensors(arrays))
                reply = self._call(self._stub.Predict, request, what)
            finally:
                self._shm.lock.release()
        else:
            # the tensors' bytes, names and a bound on each tensor's metadata: no serialising to measure
            size = sum(a.nbytes + len(k.encode()) + 64 for k, a in arrays.items()) + len(name.encode()) + 16
            reply = self._call(self._stub.Predict, _predict_request(name, arrays), what, size=size)
        return _outputs(reply, outputs)

    def send_predict(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[TensorInfo] | None = None,
    ) -> SentPredict:
        """Sends a Predict and returns at once; `result()` of what it returns gives what `predict` would
        have returned or raised (tensors go as byte_data: the one shared memory segment stays with
        `predict`). For a second request on the agent while the caller waits for a first one."""
        arrays = {key: np.ascontiguousarray(value) for key, value in inputs.items()}
        request = _predict_request(name, arrays)
        return SentPredict(SentCall(self._stub.Predict, request, f"Predict {name}", self._policy()), outputs)

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

    def _call(
        self,
        method: Callable[..., Response],
        request: Any,
        what: str,
        timeout: float | None = None,
        size: int | None = None,
    ) -> Response:
        return call(method, request, what, self._policy(timeout), size=size)

    def _policy(self, timeout: float | None = None) -> CallPolicy:
        return CallPolicy(
            timeout=self.options.timeout if timeout is None else timeout,
            retries=self.options.retries,
            backoff=self.options.backoff,
            blocking_max_bytes=self.options.blocking_max_bytes,
            socket_path=self.socket_path,
            before_attempt=self._trust.check,
        )


class SentPredict:
    """A Predict sent by `AgentClient.send_predict`: `result()` waits for its outputs, `cancel()` gives it
    up."""

    def __init__(self, sent: SentCall[pb.PredictResponse], outputs: Sequence[TensorInfo] | None) -> None:
        self._sent = sent
        self._outputs = outputs

    def result(self) -> tuple[np.ndarray, ...]:
        return _outputs(self._sent.result(), self._outputs)

    @property
    def answered_at(self) -> float | None:
        """time.perf_counter() when the agent's answer arrived (None: not yet, or it came by a retry)."""
        return self._sent.answered_at

    def cancel(self) -> None:
        self._sent.cancel()


def _predict_request(name: str, arrays: Mapping[str, np.ndarray]) -> pb.PredictRequest:
    return pb.PredictRequest(name=name, tensors=[to_tensor(k, v) for k, v in arrays.items()])


def _outputs(reply: pb.PredictResponse, outputs: Sequence[TensorInfo] | None) -> tuple[np.ndarray, ...]:
    return tuple(_decode_output(i, tensor, outputs) for i, tensor in enumerate(reply.tensors))


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
