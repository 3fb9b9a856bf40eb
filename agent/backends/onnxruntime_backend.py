"""ONNX Runtime backend: a folder holding exactly one `.onnx` file (CPU execution provider)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent_client.errors import BackendError, BackendUnavailableError
from agent_client.tensors import TensorInfo

logger = logging.getLogger(__name__)

# ONNX Runtime's element type strings -> numpy dtypes the agent API can carry.
_ORT_TYPES: dict[str, np.dtype] = {
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
}


def _import_ort() -> Any:
    # ONNX Runtime writes a device id and telemetry queue under ~/.cache at import unless told not to.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            "the onnxruntime backend needs ONNX Runtime: pip install 'gg-edge-classifier[onnx]' "
            "(or onnxruntime from requirements/agent.txt)"
        ) from exc
    return onnxruntime


def _info(arg: Any) -> TensorInfo:
    try:
        dtype = _ORT_TYPES[arg.type]
    except KeyError:
        raise BackendError(
            f"model tensor {arg.name!r} has type {arg.type}, which the agent API cannot carry"
        ) from None
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorInfo(name=arg.name, dtype=dtype, shape=shape)


class OrtSession:
    def __init__(self, path: Path, threads: int) -> None:
        ort = _import_ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session: Any = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own untyped errors for corrupt or unsupported graphs
            raise BackendError(f"ONNX Runtime could not load {path}: {exc}") from exc
        self.inputs = tuple(_info(a) for a in self._session.get_inputs())
        self.outputs = tuple(_info(a) for a in self._session.get_outputs())

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        session = self._session
        if session is None:
            raise BackendError("the model was unloaded while a request was running; load it again")
        try:
            return [np.asarray(o) for o in session.run(None, dict(inputs))]
        except Exception as exc:  # ORT's runtime errors carry no stable type
            raise BackendError(f"ONNX Runtime failed to run the model: {exc}") from exc

    def close(self) -> None:
        # Memory is freed when the last running request lets go of the session.
        self._session = None


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def detect(self, folder: Path) -> bool:
        return len(list(folder.glob("*.onnx"))) == 1

    def load(self, folder: Path, threads: int) -> OrtSession:
        (path,) = folder.glob("*.onnx")
        logger.info("loading %s with ONNX Runtime (%d threads)", path, threads)
        return OrtSession(path, threads)


BACKEND = OnnxRuntimeBackend()
