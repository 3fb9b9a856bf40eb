"""The README's table of the sample images: top-1 and score with this project's preprocessing, with
torchvision's mean/std, with the replaced AWS sample's preprocessing, and with that sample's layout fixed.

    PYTHONPATH=. .venv/bin/python -m modelprep scores

"This project" is the bundled package as the component runs it (the JPEG opened as a frame source opens
it, the manifest's Preprocessor, uint8 into the graph's prologue). The other columns feed the float network
behind the prologue: torchvision's ImageNet mean/std instead of (x - 127) / 128; and what the sample did
(`sample_tensor`). Needs onnx and onnxruntime (the dev venv has both).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from component.preprocess import Preprocessor, decode_image
from component.sources import open_image
from modelpkg.manifest import load_labels, load_manifest

from .prologue import float_preprocessor
from .reference import float_network

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "artifacts" / "models" / "efficientnet-lite0"
IMAGES = ROOT / "artifacts" / "images"
SAMPLES = ("chelsea", "coffee", "rocket", "motorcycle", "camera")
SAMPLE_MEAN = np.array([123, 117, 104], dtype=np.float32)
TORCHVISION_MEAN = (123.675, 116.28, 103.53)
TORCHVISION_STD = (58.395, 57.12, 57.375)


def sample_tensor(picture: Image.Image, *, layout_bug: bool = True) -> np.ndarray:
    """What the replaced AWS sample sent: the image squashed to 224x224, back to BGR, minus [123, 117, 104]
    (an RGB mean applied to BGR channels), no scaling, as NHWC bytes; the model reads them as NCHW
    (layout_bug), so every "channel" plane is really interleaved pixels. Its scores were the raw outputs."""
    array = np.asarray(picture.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), np.float32)
    nhwc = np.ascontiguousarray(array[..., ::-1] - SAMPLE_MEAN)
    return nhwc.reshape(1, 3, 224, 224) if layout_bug else np.ascontiguousarray(nhwc.transpose(2, 0, 1)[None])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return np.asarray(shifted / shifted.sum())


def table() -> str:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    manifest = load_manifest(MODEL)
    labels = load_labels(manifest)
    package = onnxruntime.InferenceSession(str(manifest.model_path), providers=["CPUExecutionProvider"])
    network = onnxruntime.InferenceSession(
        float_network(manifest.model_path), providers=["CPUExecutionProvider"]
    )
    ours = Preprocessor(manifest.preprocess, manifest.input.shape)
    torchvision = float_preprocessor(replace(manifest.preprocess, mean=TORCHVISION_MEAN, std=TORCHVISION_STD))

    def best(session: Any, tensor: np.ndarray, probabilities: bool = True) -> str:
        logits = session.run(None, {"input": tensor})[0][0]
        scores = softmax(logits) if probabilities else logits
        index = int(np.argmax(scores))
        return f"{labels[index]} {scores[index]:.3f}" if probabilities else labels[index]

    lines = [
        "| image | this project | torchvision mean/std | the replaced sample (BGR, mean-only, NHWC bytes "
        "declared as NCHW, no softmax) | the sample with its layout fixed |",
        "|---|---|---|---|---|",
    ]
    for name in SAMPLES:
        path = IMAGES / f"{name}.jpg"
        picture = decode_image(path)
        cells = [
            best(package, ours(open_image(path.read_bytes(), str(path)))),
            best(network, torchvision(picture)),
            best(network, sample_tensor(picture), probabilities=False),
            best(network, sample_tensor(picture, layout_bug=False), probabilities=False),
        ]
        lines.append(f"| {path.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
