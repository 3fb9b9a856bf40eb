"""Client of the inference agent's gRPC API (wire-compatible with SageMaker Edge Manager's agent).

The client and its tensors are imported on first use, so that `agent_client.errors` (the project's exception
tree, standard library only) can be imported by tools that run without grpc, such as build.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import DEFAULT_SOCKET, AgentClient, CaptureStatus, ClientOptions, ModelInfo
    from .tensors import TensorInfo

_LAZY = {
    "DEFAULT_SOCKET": ".client",
    "AgentClient": ".client",
    "CaptureStatus": ".client",
    "ClientOptions": ".client",
    "ModelInfo": ".client",
    "TensorInfo": ".tensors",
}

__all__ = ["DEFAULT_SOCKET", "AgentClient", "CaptureStatus", "ClientOptions", "ModelInfo", "TensorInfo"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
