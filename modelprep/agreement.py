"""Top-1 and score changes of the packages as the component runs them now, against the 1.x float path.

    PYTHONPATH=. .venv-prep/bin/python -m modelprep agreement

Images: the five samples (JPEG files, handed to the Preprocessor opened but not yet decoded, as a frame
source does), the held-out set of modelprep.calibration (in memory; needs scikit-image) and the samples
blown up to 1920x1080 JPEGs (decoded at a reduced DCT scale). Reference: the FP32 package's float network
(prologue stripped: the 1.1.0 model) fed modelprep.reference.legacy_tensor, i.e. the 1.x scores. Each row:
how many images keep the reference's top-1, the largest change of any softmax score, and the largest logit
difference from the FP32 package fed the very same input (the runtime's or the quantization's own share).
The Neo row needs DLR (requirements/modelprep.txt has it on x86_64) and is left out without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from component.preprocess import Preprocessor
from component.sources import open_image
from modelpkg.manifest import load_manifest

from .reference import blown_up, float_network, legacy_tensor

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "artifacts" / "models"
IMAGES = ROOT / "artifacts" / "images"


@dataclass(frozen=True)
class Row:
    package: str
    images: str
    same_top1: int
    count: int
    max_score_change: float
    changed: tuple[str, ...]
    max_logit_diff: float  # against the FP32 package fed the same input (the runtime's own difference)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def image_sets() -> dict[str, dict[str, Any]]:
    """name -> {image name: JPEG bytes or PIL image}."""
    samples = {p.name: p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))}
    sets: dict[str, dict[str, Any]] = {"samples": samples}
    try:
        from .calibration import held_out_images

        sets["held-out"] = dict(held_out_images())
    except ImportError:
        logger.warning("scikit-image is not installed: no held-out images (use .venv-prep)")
    sets["1920x1080"] = {name: blown_up(IMAGES / name) for name in samples}
    return sets


def runner(folder: Path) -> Callable[[np.ndarray], np.ndarray] | None:
    manifest = load_manifest(folder)
    if manifest.format == "neo":
        from agent.backends import RuntimeSettings, dlr_backend
        from agent.package import read_package
        from agent_client.errors import BackendError
        from agent_client.sockets import default_trusted_uids

        try:
            with read_package(folder.parent, folder.resolve(), default_trusted_uids()) as package:
                session = dlr_backend.BACKEND.load(package, RuntimeSettings(threads=2))
        except BackendError as exc:  # DLR missing, or compiled for another CPU: the row is left out
            logger.warning("%s left out: %s", folder.name, exc)
            return None
        return lambda x: np.asarray(session.run({manifest.input.name: x})[0])
    import onnxruntime

    ort = onnxruntime.InferenceSession(str(manifest.model_path), providers=["CPUExecutionProvider"])
    return lambda x: np.asarray(ort.run(None, {manifest.input.name: x})[0])


def as_frame(name: str, image: Any) -> Image.Image:
    """JPEG bytes opened as a frame source opens them (not decoded); an in-memory image as it is."""
    return open_image(image, name) if isinstance(image, bytes) else image


def agreement(packages: tuple[str, ...]) -> list[Row]:
    import onnxruntime

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    reference_manifest = load_manifest(MODELS / "efficientnet-lite0")
    network = onnxruntime.InferenceSession(
        float_network(reference_manifest.model_path), providers=["CPUExecutionProvider"]
    )
    sets = image_sets()
    references = {
        set_name: {
            name: softmax(
                network.run(None, {"input": legacy_tensor(image, reference_manifest.preprocess)})[0]
            )[0]
            for name, image in images.items()
        }
        for set_name, images in sets.items()
    }
    fp32 = runner(MODELS / "efficientnet-lite0")
    assert fp32 is not None
    rows = []
    for package in packages:
        folder = MODELS / package
        run = runner(folder)
        if run is None:
            continue
        manifest = load_manifest(folder)
        preprocess = Preprocessor(manifest.preprocess, manifest.input.shape)
        for set_name, images in sets.items():
            changed, worst, logit_diff = [], 0.0, 0.0
            for name, image in images.items():
                tensor = preprocess(as_frame(name, image))
                logits = run(tensor)
                logit_diff = max(logit_diff, float(np.abs(logits - fp32(tensor)).max()))
                scores = softmax(logits)[0]
                reference = references[set_name][name]
                worst = max(worst, float(np.abs(scores - reference).max()))
                if int(np.argmax(scores)) != int(np.argmax(reference)):
                    changed.append(name)
            same = len(images) - len(changed)
            rows.append(Row(package, set_name, same, len(images), worst, tuple(changed), logit_diff))
            logger.info(
                "%s on %s: top-1 %d/%d, max score change %.4f", package, set_name, same, len(images), worst
            )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| package | images | top-1 as 1.x | max score change | top-1 changed on | max logit diff vs FP32 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.package} | {row.images} | {row.same_top1}/{row.count} | {row.max_score_change:.4f} | "
            f"{', '.join(row.changed) or '-'} | {row.max_logit_diff:.1e} |"
        )
    return "\n".join(lines)
