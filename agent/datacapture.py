"""CaptureData: inference inputs/outputs queued by clients and written to disk off the request path.

Layout: `<capture_dir>/<model_name>/<capture_id>/` holding one `.npy` per tensor (`input-<i>.npy`,
`output-<i>.npy`), one file per auxiliary datum (`aux-input-<i>.<ext>`), and `capture.json`:
{"capture_id", "model_name", "inference_timestamp": {"seconds", "nanos"}, "tensors": [{"role", "name",
"dtype", "shape", "file"}], "auxiliary": [{"role", "name", "encoding", "file"}]}. A capture folder
appears whole or not at all (written to a temporary name, then renamed).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from agent_client import agent_pb2 as pb
from agent_client.errors import CaptureQueueFullError, EdgeError, InvalidRequestError
from agent_client.tensors import TensorInfo, from_bytes

logger = logging.getLogger(__name__)

CAPTURE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_EXTENSIONS = {pb.CSV: "csv", pb.JSON: "json", pb.NONE: "bin", pb.BASE64: "b64"}


class CaptureWriter:
    """A bounded queue and one writer thread. Statuses of the last `keep_status` captures are kept."""

    def __init__(self, capture_dir: Path, max_pending: int = 64, keep_status: int = 4096) -> None:
        self.capture_dir = capture_dir
        self._queue: queue.Queue[pb.CaptureDataRequest | None] = queue.Queue(maxsize=max_pending)
        self._status: OrderedDict[str, int] = OrderedDict()
        self._keep = keep_status
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="capture-writer", daemon=True)

    def start(self) -> None:
        self.capture_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Writes what is queued (up to timeout seconds), then stops the thread."""
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                logger.warning("capture queue still full at shutdown; pending captures are dropped")
                return
            self._thread.join(timeout)

    def submit(self, request: pb.CaptureDataRequest) -> None:
        if not CAPTURE_ID.fullmatch(request.capture_id):
            raise InvalidRequestError(
                f"capture_id {request.capture_id!r} is invalid: use a UUID (letters, digits, '-', '_', '.')"
            )
        if (
            not request.input_tensors
            and not request.output_tensors
            and not request.inputs
            and not request.outputs
        ):
            raise InvalidRequestError("CaptureData needs at least one tensor or auxiliary datum")
        with self._lock:
            if request.capture_id in self._status:
                raise InvalidRequestError(
                    f"capture_id {request.capture_id} was already used; send a new UUID"
                )
            self._set(request.capture_id, pb.IN_PROGRESS)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            with self._lock:
                self._status.pop(request.capture_id, None)
            raise CaptureQueueFullError(
                f"capture queue full ({self._queue.maxsize} pending); capture less often"
            ) from None

    def status(self, capture_id: str) -> int:
        with self._lock:
            return self._status.get(capture_id, pb.NOT_FOUND)

    def _set(self, capture_id: str, status: int) -> None:
        self._status[capture_id] = status
        self._status.move_to_end(capture_id)
        while len(self._status) > self._keep:
            self._status.popitem(last=False)

    def _work(self) -> None:
        while (request := self._queue.get()) is not None:
            try:
                self._write(request)
                outcome = pb.SUCCESS
            except (OSError, EdgeError, ValueError) as exc:
                logger.warning("capture %s failed: %s", request.capture_id, exc)
                outcome = pb.FAILURE
            with self._lock:
                self._set(request.capture_id, outcome)

    def _write(self, request: pb.CaptureDataRequest) -> None:
        model_dir = self.capture_dir / (request.model_name or "unnamed")
        final = model_dir / request.capture_id
        staging = model_dir / f".{request.capture_id}.partial"
        staging.mkdir(parents=True, exist_ok=False)
        try:
            tensors = [
                _write_tensor(staging, role, i, tensor)
                for role, group in (("input", request.input_tensors), ("output", request.output_tensors))
                for i, tensor in enumerate(group)
            ]
            auxiliary = [
                _write_aux(staging, role, i, datum)
                for role, group in (("input", request.inputs), ("output", request.outputs))
                for i, datum in enumerate(group)
            ]
            sidecar = {
                "capture_id": request.capture_id,
                "model_name": request.model_name,
                "inference_timestamp": {
                    "seconds": request.inference_timestamp.seconds,
                    "nanos": request.inference_timestamp.nanos,
                },
                "tensors": tensors,
                "auxiliary": auxiliary,
            }
            (staging / "capture.json").write_text(json.dumps(sidecar, indent=2) + "\n")
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _write_tensor(folder: Path, role: str, index: int, tensor: pb.Tensor) -> dict[str, object]:
    if tensor.WhichOneof("data") != "byte_data":
        raise InvalidRequestError("captured tensors must carry byte_data")
    name = f"{role}-{index}"
    if tensor.HasField("tensor_metadata"):
        info = TensorInfo.from_proto(tensor.tensor_metadata)
        np.save(folder / f"{name}.npy", from_bytes(tensor.byte_data, info), allow_pickle=False)
        return {
            "role": role,
            "name": info.name,
            "dtype": str(info.dtype),
            "shape": list(info.shape),
            "file": f"{name}.npy",
        }
    (folder / f"{name}.bin").write_bytes(tensor.byte_data)
    return {"role": role, "name": "", "dtype": None, "shape": None, "file": f"{name}.bin"}


def _write_aux(folder: Path, role: str, index: int, datum: pb.AuxilaryData) -> dict[str, object]:
    if datum.WhichOneof("data") != "byte_data":
        raise InvalidRequestError("captured auxiliary data must carry byte_data")
    file = f"aux-{role}-{index}.{_EXTENSIONS.get(datum.encoding, 'bin')}"
    (folder / file).write_bytes(datum.byte_data)
    return {"role": role, "name": datum.name, "encoding": pb.Encoding.Name(datum.encoding), "file": file}
