"""Images for INT8 calibration and for the held-out agreement check, from packages only.

Calibration: scikit-image's bundled photos that are *not* the project's sample images, plus mirrors and
off-centre crops of them. Held-out: the project's five sample images, their mirrors and central crops,
which the calibration never sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps

CALIBRATION_SOURCES = (
    "astronaut",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "horse",
    "logo",
    "colorwheel",
    "page",
    "text",
    "brick",
    "moon",
    "clock",
    "cell",
)


def _skimage_image(name: str) -> Image.Image:
    from skimage import data

    array = getattr(data, name)()
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64) / max(float(array.max()), 1e-9), 0, 1) * 255).astype(
            np.uint8
        )
    return Image.fromarray(array).convert("RGB")


def _variants(image: Image.Image) -> Iterator[Image.Image]:
    """The image, its mirror, and two off-centre crops of 3/4 size."""
    yield image
    yield ImageOps.mirror(image)
    width, height = image.size
    w, h = width * 3 // 4, height * 3 // 4
    yield image.crop((0, 0, w, h))
    yield image.crop((width - w, height - h, width, height))


def calibration_images() -> list[Image.Image]:
    return [variant for name in CALIBRATION_SOURCES for variant in _variants(_skimage_image(name))]


def variants(photos: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """Each photo (as RGB), its mirror and its central 3/4 crop, by name (`name`, `name-mirror`,
    `name-centre`)."""
    held: dict[str, Image.Image] = {}
    for name, photo in photos.items():
        image = photo.convert("RGB")
        width, height = image.size
        held[name] = image
        held[f"{name}-mirror"] = ImageOps.mirror(image)
        held[f"{name}-centre"] = image.crop(
            (width // 8, height // 8, width - width // 8, height - height // 8)
        )
    return held


def held_out_images() -> dict[str, Image.Image]:
    """The five sample images, their mirrors and their central 3/4 crops, by name."""
    from skimage import data

    photos = {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0],
        "camera": data.camera(),
    }
    return variants({name: Image.fromarray(array) for name, array in photos.items()})
