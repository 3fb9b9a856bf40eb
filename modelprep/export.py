"""Exports the model to ONNX and writes the model folder: model.onnx, labels.txt, manifest.json."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .efficientnet import ARCHITECTURE_PACKAGE, INPUT_SIZE, WEIGHTS_PACKAGE, load_model
from .labels import LABELS_PACKAGE, NUM_CLASSES, imagenet_labels

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.txt"
# EfficientNet-Lite was trained on 0..255 RGB scaled as (x - 127) / 128 (the TensorFlow reference
# implementation's MEAN_RGB/STDDEV_RGB for the Lite family); measured here, it gives the reference
# scores, while torchvision's ImageNet mean/std lowers confidence and reorders close classes.
PREPROCESS = {
    "resize_shorter": 256,
    "crop": [INPUT_SIZE, INPUT_SIZE],
    "resample": "bilinear",
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_onnx(model: Any, path: Path) -> None:
    import torch

    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=18,
        external_data=False,
        input_names=["input"],
        output_names=["logits"],
    )
    program.save(str(path), external_data=False)


def max_difference(model: Any, path: Path, samples: int = 4) -> float:
    """Largest |torch - onnxruntime| over random inputs in the model's input range."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(samples):
        x = rng.uniform(-1, 1, (1, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        (got,) = session.run(None, {"input": x})
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def manifest(sha256: str, torch_version: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "name": "efficientnet-lite0",
        "version": "1.0.0",
        "format": "onnx",
        "file": MODEL_FILE,
        "sha256": sha256,
        "input": {
            "name": "input",
            "dtype": "float32",
            "shape": [1, 3, INPUT_SIZE, INPUT_SIZE],
            "layout": "NCHW",
            "color_order": "RGB",
        },
        "preprocess": PREPROCESS,
        "output": {"name": "logits", "kind": "logits", "classes": NUM_CLASSES},
        "labels": LABELS_FILE,
        "provenance": {
            "weights": WEIGHTS_PACKAGE,
            "architecture": ARCHITECTURE_PACKAGE,
            "labels": LABELS_PACKAGE,
            "exporter": f"torch.onnx.export dynamo=True opset 18, torch {torch_version}",
            "licence": "Apache-2.0 (weights and architecture), MIT (labels)",
        },
    }


def write_model_folder(out: Path) -> dict[str, Any]:
    """Writes out/model.onnx, out/labels.txt, out/manifest.json; returns the manifest."""
    import torch

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        staged = Path(tmp) / MODEL_FILE
        export_onnx(model, staged)
        diff = max_difference(model, staged)
        logger.info("max |torch - onnxruntime| = %.2e", diff)
        if diff > 1e-3:
            raise RuntimeError(f"the exported model disagrees with torch by {diff:.2e}")
        os.replace(staged, out / MODEL_FILE)
    (out / LABELS_FILE).write_text("\n".join(imagenet_labels()) + "\n")
    written = manifest(sha256_of(out / MODEL_FILE), torch.__version__)
    (out / "manifest.json").write_text(json.dumps(written, indent=2) + "\n")
    logger.info("wrote %s (%d bytes, sha256 %s)", out, (out / MODEL_FILE).stat().st_size, written["sha256"])
    return written
