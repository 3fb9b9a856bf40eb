"""The previous float path, kept as the reference the new one is measured against.

`legacy_tensor` is what the component did before 2.0.0 of the packages, and what AWS's in-process
image-classification component does: decode the whole image, resize the whole image so that its shorter
side is 256, cut the centre 224x224, (x - 127) / 128 in float32 over (h, w, 3), NCHW. `float_network`
is the package's model with its uint8 prologue stripped: for the bundled FP32 package, byte for byte the
1.1.0 model.onnx. Together they give the scores of the 1.x packages.

`blown_up` makes large JPEGs (e.g. 1920x1080) from the sample images, to exercise the reduced-scale
decoding that only large frames get.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from component.preprocess import normalisation, to_rgb
from modelpkg.manifest import PreprocessSpec

JPEG_QUALITY = 92


def legacy_tensor(image: Image.Image | bytes | Path, spec: PreprocessSpec) -> np.ndarray:
    """(x - mean) / std float32 NCHW [1, 3, h, w] the pre-2.0.0 way (full decode, whole-image resize)."""
    if not isinstance(image, Image.Image):
        image = Image.open(io.BytesIO(image.read_bytes() if isinstance(image, Path) else image))
        image.load()
    rgb = to_rgb(image)
    width, height = rgb.size
    scale = spec.resize_shorter / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling[spec.resample.upper()]
    resized = rgb.resize(size, resample) if size != rgb.size else rgb
    crop_h, crop_w = spec.crop
    left, top = (size[0] - crop_w) // 2, (size[1] - crop_h) // 2
    pixels = np.asarray(resized.crop((left, top, left + crop_w, top + crop_h)), dtype=np.float32)
    scale_, shift = normalisation(spec.mean, spec.std, "RGB")
    return np.ascontiguousarray((pixels * scale_ + shift).transpose(2, 0, 1)[np.newaxis])


def float_network(model_path: Path) -> bytes:
    """The serialized float-input network of a package model (its uint8 prologue stripped, if any)."""
    import onnx

    from .prologue import has_uint8_prologue, strip_uint8_prologue

    model: Any = onnx.load(str(model_path))
    return bytes((strip_uint8_prologue(model) if has_uint8_prologue(model) else model).SerializeToString())


def blown_up(path: Path, size: tuple[int, int] = (1920, 1080)) -> bytes:
    """A JPEG of the image at path scaled (bicubic) to cover size and centre-cropped to it."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    scale = max(size[0] / rgb.width, size[1] / rgb.height)
    scaled = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BICUBIC)
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    buffer = io.BytesIO()
    scaled.crop((left, top, left + size[0], top + size[1])).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
