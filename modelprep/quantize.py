"""ONNX INT8 with static QDQ quantization, calibrated on package images, checked against FP32.

Static (not dynamic) quantization: measured on this model, dynamic INT8 is slower than FP32 and agrees
on top-1 far less often. Weights are per-channel signed INT8, activations unsigned INT8 (QDQ format,
which ONNX Runtime fuses into integer kernels on x86_64 and aarch64).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from component.preprocess import Preprocessor
from modelpkg.manifest import load_manifest, write_manifest

from .calibration import calibration_images, held_out_images
from .export import LABELS_FILE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Agreement:
    images: int
    top1_agree: int
    fp32_ms: float
    int8_ms: float
    disagreements: tuple[str, ...]

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms


class _Reader:
    """The CalibrationDataReader protocol of onnxruntime.quantization over preprocessed tensors."""

    def __init__(self, input_name: str, tensors: list[np.ndarray]) -> None:
        self._items = iter([{input_name: t} for t in tensors])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize(fp32_folder: Path, out: Path) -> Agreement:
    """Writes out/ (model.onnx INT8, labels, manifest) from the FP32 folder; returns the agreement."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    manifest = load_manifest(fp32_folder)
    preprocess = Preprocessor(manifest.preprocess, manifest.input.shape)
    tensors = [preprocess(image) for image in calibration_images()]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(manifest.model_path), str(prepared))
        staged = Path(tmp) / "model.onnx"
        quantize_static(
            str(prepared),
            str(staged),
            _Reader(manifest.input.name, tensors),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        os.replace(staged, out / "model.onnx")
    shutil.copyfile(fp32_folder / LABELS_FILE, out / LABELS_FILE)
    agreement = compare(manifest.model_path, out / "model.onnx", preprocess, manifest.input.name)
    data: dict[str, Any] = json.loads((fp32_folder / "manifest.json").read_text())
    data["name"] = "efficientnet-lite0-int8"
    data["provenance"]["quantization"] = (
        f"onnxruntime static QDQ, per-channel INT8 weights, UINT8 activations, MinMax over "
        f"{len(tensors)} calibration images; top-1 agrees with FP32 on {agreement.top1_agree}/"
        f"{agreement.images} held-out images"
    )
    write_manifest(out, data)
    return agreement


def compare(fp32: Path, int8: Path, preprocess: Preprocessor, input_name: str, runs: int = 50) -> Agreement:
    """Top-1 agreement on the held-out images and median latency of each model (2 threads)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    sessions = [
        onnxruntime.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for p in (fp32, int8)
    ]
    held = {name: preprocess(image) for name, image in held_out_images().items()}
    agree, disagreements = 0, []
    for name, tensor in held.items():
        tops = [int(np.argmax(s.run(None, {input_name: tensor})[0])) for s in sessions]
        if tops[0] == tops[1]:
            agree += 1
        else:
            disagreements.append(name)
    tensor = next(iter(held.values()))
    medians = []
    for session in sessions:
        for _ in range(10):
            session.run(None, {input_name: tensor})
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, {input_name: tensor})
            times.append((time.perf_counter() - started) * 1000)
        medians.append(statistics.median(times))
    result = Agreement(len(held), agree, medians[0], medians[1], tuple(disagreements))
    logger.info(
        "INT8 vs FP32: top-1 agrees on %d/%d held-out images (differs on %s); median %.2f -> %.2f ms (x%.2f)",
        result.top1_agree,
        result.images,
        ", ".join(result.disagreements) or "none",
        result.fp32_ms,
        result.int8_ms,
        result.speedup,
    )
    return result
