"""The bundled model with the manifest's preprocessing gives the known classes; the sample's does not.

Runs ONNX Runtime directly (no agent) so a preprocessing regression shows up here on its own.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from component.manifest import load_labels, load_manifest
from component.postprocess import softmax, top_k
from component.preprocess import Preprocessor, decode_image

from ..helpers import IMAGES_DIR, MODEL_DIR

pytestmark = pytest.mark.integration

EXPECTED = {
    "chelsea.jpg": ("tiger cat", "Egyptian cat", "tabby"),
    "coffee.jpg": ("espresso", "cup"),
    "camera.jpg": ("tripod",),
    "motorcycle.jpg": ("moped", "motor scooter"),
    "rocket.jpg": ("missile", "projectile"),
}


@pytest.fixture(scope="module")
def session():  # type: ignore[no-untyped-def]
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])


def scores(session, tensor: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    (logits,) = session.run(None, {"input": tensor})
    return softmax(logits)


def sample_preprocessing(image: Image.Image) -> np.ndarray:
    """What the replaced AWS sample did: squash to 224x224, BGR, subtract [123, 117, 104], no scaling."""
    array = np.asarray(image.convert("RGB").resize((224, 224)), dtype=np.float32)[..., ::-1]
    array = array - np.array([123, 117, 104], dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1)[np.newaxis])


def test_manifest_preprocessing_gives_the_known_classes(session) -> None:  # type: ignore[no-untyped-def]
    manifest = load_manifest(MODEL_DIR)
    labels = load_labels(manifest)
    preprocess = Preprocessor(manifest.preprocess, manifest.input.shape)
    for name, expected in EXPECTED.items():
        best = top_k(scores(session, preprocess(decode_image(IMAGES_DIR / name))), labels, 1, 0.0)[0]
        assert best.label == expected[0] or best.label in expected, (name, best)
        assert best.score >= 0.3, (name, best)
    coffee = top_k(scores(session, preprocess(decode_image(IMAGES_DIR / "coffee.jpg"))), labels, 1, 0.0)[0]
    assert coffee.label == "espresso" and coffee.score > 0.9


def test_the_replaced_samples_preprocessing_gets_classes_wrong(session) -> None:  # type: ignore[no-untyped-def]
    labels = load_labels(load_manifest(MODEL_DIR))
    wrong = []
    for name, expected in EXPECTED.items():
        best = top_k(scores(session, sample_preprocessing(decode_image(IMAGES_DIR / name))), labels, 1, 0.0)[
            0
        ]
        if best.label not in expected:
            wrong.append((name, best.label))
    assert {name for name, _ in wrong} >= {"coffee.jpg", "rocket.jpg"}, wrong
