"""CaptureData: inference inputs/outputs queued by clients and written to disk off the request path.

Layout: `<capture_dir>/<model_name>/<capture_id>/` holding one `.npy` per tensor (`input-<i>.npy`,
`output-<i>.npy`), one file per auxiliary datum (`aux-input-<i>.<ext>`), and `capture.json`:
{"capture_id", "model_name", "inference_timestamp": {"seconds", "nanos"}, "tensors": [{"role", "name",
"dtype", "shape", "file"}], "auxiliary": [{"role", "name", "encoding", "file"}]}. A capture folder
appears whole or not at all (written to a temporary name, then renamed). model_name must be a model name
(agent.models.MODEL_NAME) and capture_id a UUID-like name before either is joined into a path.

Bounds (CaptureLimits): one request at most `max_request_bytes`; the queue at most `max_pending` requests
and `max_pending_bytes` (CaptureQueueFullError beyond); on disk at most `max_bytes` and `max_count` captures:
after each write the oldest capture folders (by write time; those found at start by modification time) are
deleted until both hold, each deletion logged and counted in `deleted`.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent_client import agent_pb2 as pb
from agent_client.errors import CaptureQueueFullError, ConfigError, EdgeError, InvalidRequestError
from agent_client.tensors import TensorInfo, from_bytes

from .models import check_model_name

logger = logging.getLogger(__name__)

CAPTURE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_EXTENSIONS = {pb.CSV: "csv", pb.JSON: "json", pb.NONE: "bin", pb.BASE64: "b64"}
MIB = 1024 * 1024


@dataclass(frozen=True)
class CaptureLimits:
    """max_bytes / max_count: captures kept on disk; max_request_bytes: one CaptureData request;
    max_pending / max_pending_bytes: requests queued for the writer."""

    max_bytes: int = 256 * MIB
    max_count: int = 10_000
    max_request_bytes: int = 16 * MIB
    max_pending: int = 64
    max_pending_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        if self.max_count < 1 or self.max_pending < 1:
            raise ConfigError("capture limits need room for at least one capture (--capture-max-count >= 1)")
        if not 0 < self.max_request_bytes <= min(self.max_bytes, self.max_pending_bytes):
            raise ConfigError(
                f"one capture request may be at most {self.max_request_bytes} bytes, which must fit the disk "
                f"quota ({self.max_bytes}, --capture-max-mb) and the queue ({self.max_pending_bytes})"
            )


def _folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())


class CaptureWriter:
    """A bounded queue, one writer thread and a disk quota. Statuses of the last `keep_status` captures are
    kept."""

    def __init__(
        self, capture_dir: Path, limits: CaptureLimits | None = None, keep_status: int = 4096
    ) -> None:
        self.capture_dir = capture_dir
        self.limits = limits or CaptureLimits()
        self.deleted = 0  # capture folders deleted to stay within the disk quota
        self._queue: queue.Queue[pb.CaptureDataRequest | None] = queue.Queue(maxsize=self.limits.max_pending)
        self._pending_bytes = 0
        self._on_disk: OrderedDict[Path, int] = OrderedDict()  # capture folder -> bytes, oldest first
        self._status: OrderedDict[str, int] = OrderedDict()
        self._keep = keep_status
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="capture-writer", daemon=True)

    def start(self) -> None:
        try:
            self.capture_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.capture_dir = self.capture_dir.resolve()
            found = [c for m in self.capture_dir.iterdir() if m.is_dir() for c in m.iterdir() if c.is_dir()]
        except OSError as exc:
            raise ConfigError(f"cannot use the capture folder {self.capture_dir}: {exc.strerror}") from exc
        for folder in sorted(found, key=lambda f: f.stat().st_mtime_ns):
            if not folder.name.startswith("."):
                self._on_disk[folder] = _folder_bytes(folder)
        self._enforce_quota()
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
        size = request.ByteSize()
        if size > self.limits.max_request_bytes:
            raise InvalidRequestError(
                f"the capture request is {size} bytes, more than the {self.limits.max_request_bytes} one "
                f"capture may take (--capture-max-request-mb); capture fewer or smaller tensors"
            )
        if not request.model_name:
            raise InvalidRequestError("CaptureData needs a model_name (the captures are filed under it)")
        check_model_name(request.model_name, "model_name")
        if not CAPTURE_ID.fullmatch(request.capture_id):
            raise InvalidRequestError(
                f"capture_id {request.capture_id[:200]!r} is invalid: use a UUID (letters, digits, '-', '_', "
                f"'.')"
            )
        if (
            not request.input_tensors
            and not request.output_tensors
            and not request.inputs
            and not request.outputs
        ):
            raise InvalidRequestError("CaptureData needs at least one tensor or auxiliary datum")
        for tensor in (*request.input_tensors, *request.output_tensors):
            _check_tensor(tensor)
        for datum in (*request.inputs, *request.outputs):
            if datum.WhichOneof("data") != "byte_data":
                raise InvalidRequestError("captured auxiliary data must carry byte_data")
            if datum.encoding not in _EXTENSIONS:
                raise InvalidRequestError(
                    f"unknown auxiliary data encoding {datum.encoding}; use CSV, JSON, NONE or BASE64"
                )
        with self._lock:
            if request.capture_id in self._status:
                raise InvalidRequestError(
                    f"capture_id {request.capture_id} was already used; send a new UUID"
                )
            if self._pending_bytes + size > self.limits.max_pending_bytes:
                raise CaptureQueueFullError(
                    f"capture queue full ({self._pending_bytes} bytes pending); capture less often"
                )
            self._set(request.capture_id, pb.IN_PROGRESS)
            self._pending_bytes += size
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            with self._lock:
                self._status.pop(request.capture_id, None)
                self._pending_bytes -= size
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
                folder = self._write(request)
                self._on_disk[folder] = _folder_bytes(folder)
                self._enforce_quota()
                outcome = pb.SUCCESS
            except (OSError, EdgeError, ValueError) as exc:
                logger.warning("capture %s failed: %s", request.capture_id, exc)
                outcome = pb.FAILURE
            with self._lock:
                self._pending_bytes -= request.ByteSize()
                self._set(request.capture_id, outcome)

    def _enforce_quota(self) -> None:
        total = sum(self._on_disk.values())
        while self._on_disk and (total > self.limits.max_bytes or len(self._on_disk) > self.limits.max_count):
            folder, size = self._on_disk.popitem(last=False)
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            self.deleted += 1
            logger.info(
                "deleted the oldest capture %s (%d bytes) to stay within %d captures and %d bytes "
                "(%d deleted so far)",
                folder,
                size,
                self.limits.max_count,
                self.limits.max_bytes,
                self.deleted,
            )

    def _write(self, request: pb.CaptureDataRequest) -> Path:
        model_dir = self.capture_dir / check_model_name(request.model_name, "model_name")
        final = model_dir / request.capture_id
        staging = model_dir / f".{request.capture_id}.partial"
        if not final.resolve().is_relative_to(self.capture_dir):
            raise InvalidRequestError(
                f"capture {request.capture_id} would be written outside the capture folder"
            )
        model_dir.mkdir(mode=0o700, exist_ok=True)
        staging.mkdir(mode=0o700, exist_ok=False)
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
        return final


def _check_tensor(tensor: pb.Tensor) -> None:
    """What _write_tensor needs, checked while the caller waits: byte_data that fits its metadata."""
    if tensor.WhichOneof("data") != "byte_data":
        raise InvalidRequestError("captured tensors must carry byte_data")
    if tensor.HasField("tensor_metadata"):
        info = TensorInfo.from_proto(tensor.tensor_metadata)
        if any(d <= 0 for d in info.shape):
            raise InvalidRequestError(f"captured tensor {info.name!r}: dimensions must be positive")
        from_bytes(tensor.byte_data, info)


def _write_tensor(folder: Path, role: str, index: int, tensor: pb.Tensor) -> dict[str, object]:
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
