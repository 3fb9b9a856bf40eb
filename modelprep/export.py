"""Exports the model to ONNX and writes the model folder: model.onnx, labels.txt, manifest.json.

The exported network takes float NCHW (x - 127) / 128; the package's model.onnx has the uint8 prologue
of modelprep.prologue in front of it, so the component sends raw uint8 RGB pixels, NHWC (in_model).
"""

from __future__ import annotations

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
MAX_BATCH = 64  # the exported graph takes 1..MAX_BATCH frames per call (its first dimension is "batch")
VERSION = "2.0.0"  # 2.0.0: the input is uint8 NHWC pixels, normalised in the graph (1.x: float NCHW)
# EfficientNet-Lite was trained on 0..255 RGB scaled as (x - 127) / 128 (the TensorFlow reference
# implementation's MEAN_RGB/STDDEV_RGB for the Lite family). The PyPI packages say nothing of their own;
# their README shows torchvision's ImageNet mean/std, inherited from efficientnet_pytorch. Measured on the
# sample images, (x - 127) / 128 gives the reference scores, while ImageNet mean/std lowers confidence and
# reorders close classes (chelsea: Egyptian cat first). Bilinear resizing matches the reference best;
# bicubic and nearest lose 0.09 and 0.15 on the rocket.
MEAN: tuple[float, float, float] = (127.0, 127.0, 127.0)
STD: tuple[float, float, float] = (128.0, 128.0, 128.0)
PREPROCESS = {
    "resize_shorter": 256,
    "crop": [INPUT_SIZE, INPUT_SIZE],
    "resample": "bilinear",
    "mean": list(MEAN),
    "std": list(STD),
    "in_model": True,
}
# The package's input: raw 0..255 RGB pixels, one frame NHWC (the batch dimension of the graph is dynamic)
INPUT = {
    "name": "input",
    "dtype": "uint8",
    "shape": [1, INPUT_SIZE, INPUT_SIZE, 3],
    "layout": "NHWC",
    "color_order": "RGB",
}
PROLOGUE = "uint8 NHWC RGB -> Transpose, Cast, Mul 1/std, Add -mean/std (modelprep.prologue)"


def export_onnx(model: Any, path: Path) -> None:
    import torch

    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    program = torch.onnx.export(
        model,
        (example,),
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},),
        dynamo=True,
        opset_version=18,
        external_data=False,
        input_names=["input"],
        output_names=["logits"],
    )
    program.save(str(path), external_data=False)
    strip_debug_metadata(path)


def strip_debug_metadata(path: Path) -> None:
    """Drops the exporter's per-node debug metadata (Python stack traces with this machine's absolute
    paths, FX node names) so the file depends only on the graph, the weights and the tool versions."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def add_prologue(path: Path) -> float:
    """Rewrites the float-input model at path with the uint8 prologue in front; returns the largest score
    difference between the two on random uint8 images, singly and as a batch of 4."""
    import onnx

    from .prologue import add_uint8_prologue, uint8_max_difference

    original = onnx.load(str(path))
    prologued = add_uint8_prologue(original, MEAN, STD)
    before, after = original.SerializeToString(), prologued.SerializeToString()
    diff = max(uint8_max_difference(before, after, MEAN, STD, batch=b) for b in (1, 4))
    onnx.save(prologued, str(path))
    return diff


def max_difference(model: Any, path: Path, samples: int = 4) -> float:
    """Largest |torch - onnxruntime| over random inputs in the model's input range, one at a time and all
    of them as one batch (the graph's first dimension is dynamic)."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    batch = rng.uniform(-1, 1, (samples, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = np.concatenate([model(torch.from_numpy(batch[i : i + 1])).numpy() for i in range(samples)])
    single = np.concatenate([session.run(None, {"input": batch[i : i + 1]})[0] for i in range(samples)])
    (batched,) = session.run(None, {"input": batch})
    return float(max(np.abs(expected - single).max(), np.abs(expected - batched).max()))


def manifest(exporter: str, check: str) -> dict[str, Any]:
    """The manifest.json content but its digests (schema: modelpkg/manifest.py; write_manifest adds them)."""
    return {
        "name": "efficientnet-lite0",
        "version": VERSION,
        "format": "onnx",
        "file": MODEL_FILE,
        "input": INPUT,
        "preprocess": PREPROCESS,
        "output": {"name": "logits", "kind": "logits", "classes": NUM_CLASSES},
        "labels": LABELS_FILE,
        "provenance": {
            "weights": WEIGHTS_PACKAGE,
            "architecture": ARCHITECTURE_PACKAGE,
            "labels": LABELS_PACKAGE,
            "exporter": exporter,
            "prologue": PROLOGUE,
            "check": check,
            "licence": "Apache-2.0 (weights and architecture), MIT (labels)",
        },
    }


def write_model_folder(out: Path) -> dict[str, Any]:
    """Writes out/model.onnx, out/labels.txt, out/manifest.json, then loads them back as the component
    will and checks the digest and labels; returns the manifest. The same package versions give the same
    bytes."""
    from importlib.metadata import version

    import torch

    from agent_client.errors import ManifestError
    from modelpkg.manifest import load_labels, load_manifest, verify_files, write_manifest

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model()
    labels = imagenet_labels()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        staged = Path(tmp) / MODEL_FILE
        export_onnx(model, staged)
        diff = max_difference(model, staged)
        logger.info("max |torch - onnxruntime| = %.2e", diff)
        if diff > 1e-3:
            raise RuntimeError(f"the exported model disagrees with torch by {diff:.2e}")
        prologue_diff = add_prologue(staged)
        logger.info("max |float input - uint8 prologue| = %.2e", prologue_diff)
        if prologue_diff > 1e-5:
            raise RuntimeError(f"the uint8 prologue changes the scores by {prologue_diff:.2e}")
        os.replace(staged, out / MODEL_FILE)
    (out / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
    written = manifest(
        exporter=(
            f"torch.onnx.export dynamo=True opset 18, torch {torch.__version__}, "
            f"onnxscript {version('onnxscript')}; per-node debug metadata stripped"
        ),
        check=(
            f"max |torch - onnxruntime {version('onnxruntime')}| = {diff:.1e} "
            f"on 4 random inputs, singly and as one batch; max |float input - uint8 prologue| = "
            f"{prologue_diff:.1e} on random uint8 images"
        ),
    )
    written = write_manifest(out, written)
    try:
        loaded = load_manifest(out)
        verify_files(loaded)
        load_labels(loaded)
    except ManifestError as exc:
        raise RuntimeError(f"the model folder just written does not validate: {exc}") from exc
    logger.info("wrote %s (%d bytes, sha256 %s)", out, (out / MODEL_FILE).stat().st_size, written["sha256"])
    return written
