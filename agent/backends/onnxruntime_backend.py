"""ONNX Runtime backend: the manifest's `file` of an "onnx" package, loaded from the open file agent.package
hashed (CPU).

ONNX Runtime reads the model through /proc/self/fd/N, the very file that was checked against the manifest,
never through the package's path, so what runs is what was verified. Models with external data files are
not supported: their data would be looked up beside that path (among the agent's open files), so ONNX
Runtime is pointed at an empty private folder for them instead, and such a model fails to load. Once the
session exists it keeps neither that path nor the model bytes (ONNX Runtime's provider fallback would load
the model again from whatever the path names by then, so it is turned off).

Cancellation: each run gets its own RunOptions; when the caller goes away, the request's Cancellation sets
`RunOptions.terminate`, and ONNX Runtime stops between nodes with an error that becomes RequestCancelledError.

Spinning (RuntimeSettings.spin, `python -m agent --spin`): ONNX Runtime's intra-op threads spin-wait for work
between runs by default ("session.intra_op.allow_spinning" = "1"). The agent turns it off unless asked.
Measured on the shared 2-core build machine (load average about 3, efficientnet-lite0, 2 threads, blocks of
calls alternating between agents, medians): spinning off 7.4-8.1 ms per frame and 7.2-7.8 ms of agent CPU per
frame; on 7.6-9.5 ms and 11.5-12.0 ms of CPU; with shared memory tensors off 5.7-6.2 ms / 7.2-7.6 ms CPU, on
4.3-4.4 ms / 9.3-9.6 ms CPU. Spinning buys latency only when cores are idle, and always costs about 2-5 ms
of CPU per frame that other processes (the component) then lack (issue 12 measured +6-18% on an idle
machine, 1.5-2x slower when another process wants the cores).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agent_client.errors import BackendError, BackendUnavailableError, RequestCancelledError
from agent_client.tensors import TensorInfo

from . import Cancellation, RuntimeSettings

if TYPE_CHECKING:
    from ..package import VerifiedPackage

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
    def __init__(self, model: bytes | str, where: str, settings: RuntimeSettings) -> None:
        """model: a serialized model, or a path ONNX Runtime opens itself."""
        ort = _import_ort()
        self._ort = ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spin else "0")
        if where.endswith(".ort"):  # ONNX Runtime tells its own format by the name, which /proc/self/fd lacks
            options.add_session_config_entry("session.load_model_format", "ORT")
        with tempfile.TemporaryDirectory(prefix="edgeclassifier-ort-") as nothing:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", nothing)
            try:
                self._session: Any = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # ORT raises its own untyped errors for corrupt or unsupported graphs
                hint = ""
                if "external data" in str(exc).lower():
                    hint = (
                        "; the agent loads no model with external data files: save it with its weights "
                        "inside (onnx.save_model without save_as_external_data)"
                    )
                raise BackendError(f"ONNX Runtime could not load {where}: {exc}{hint}") from exc
        # ORT's Python wrapper keeps the model (bytes or path) for ever, only to rebuild the session if
        # set_providers() is called, which its provider fallback does after a failed run: the bytes cost
        # memory (27 MiB for lite0) and the path would by then name another file or none.
        self._session.disable_fallback()
        for kept in ("_model_bytes", "_model_path"):
            if getattr(self._session, kept, None) is not None:
                setattr(self._session, kept, None)
        self.inputs = tuple(_info(a) for a in self._session.get_inputs())
        self.outputs = tuple(_info(a) for a in self._session.get_outputs())

    def run(
        self, inputs: Mapping[str, np.ndarray], cancel: Cancellation | None = None
    ) -> Sequence[np.ndarray]:
        session = self._session
        if session is None:
            raise BackendError("the model was unloaded while a request was running; load it again")
        run_options = self._ort.RunOptions()
        if cancel is not None:
            cancel.on_cancel(lambda: setattr(run_options, "terminate", True))
        try:
            return [np.asarray(o) for o in session.run(None, dict(inputs), run_options)]
        except Exception as exc:  # ORT's runtime errors carry no stable type
            if cancel is not None and cancel.cancelled:
                raise RequestCancelledError("the caller went away; ONNX Runtime stopped the run") from exc
            raise BackendError(f"ONNX Runtime failed to run the model: {exc}") from exc

    def session_options(self) -> Any:
        """The SessionOptions the session runs with (onnxruntime.SessionOptions)."""
        return self._session.get_session_options()

    def close(self) -> None:
        # Memory is freed when the last running request lets go of the session.
        self._session = None


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def warm_up(self) -> None:
        try:
            _import_ort()
        except BackendUnavailableError:
            logger.debug("ONNX Runtime is not installed: nothing to warm up")

    def load(self, package: VerifiedPackage, settings: RuntimeSettings) -> OrtSession:
        path = package.folder / package.manifest.file
        logger.info(
            "loading %s with ONNX Runtime (%d threads, spinning %s)",
            path,
            settings.threads,
            "on" if settings.spin else "off",
        )
        return OrtSession(package.path(package.manifest.file), str(path), settings)


BACKEND = OnnxRuntimeBackend()
