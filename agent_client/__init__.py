"""Client of the inference agent's gRPC API (wire-compatible with SageMaker Edge Manager's agent)."""

from .client import DEFAULT_SOCKET, AgentClient, CaptureStatus, ClientOptions, ModelInfo
from .tensors import TensorInfo

__all__ = ["DEFAULT_SOCKET", "AgentClient", "CaptureStatus", "ClientOptions", "ModelInfo", "TensorInfo"]
