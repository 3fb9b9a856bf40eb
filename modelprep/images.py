"""Sample photos with known content, taken from the scikit-image wheel and written as JPEG."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def _samples() -> dict[str, tuple[Callable[[], np.ndarray], str, str]]:
    from skimage import data

    return {
        "chelsea": (data.chelsea, "a cat; CC0, photo by Stefan van der Walt", "tiger cat"),
        "coffee": (data.coffee, "a cup of coffee; CC0, photo by Rachel Michetti", "espresso"),
        "rocket": (data.rocket, "DSCOVR on Falcon 9; public domain, SpaceX", "missile"),
        "motorcycle": (
            lambda: data.stereo_motorcycle()[0],
            "a motorcycle; Middlebury 2014 stereo benchmark (Scharstein et al.), left view",
            "moped",
        ),
        "camera": (
            data.camera,
            "a photographer with a camera on a tripod, grayscale; CC0, Lav Varshney",
            "tripod",
        ),
    }


def write_images(out: Path, quality: int = 95) -> list[Path]:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    written = []
    rows = []
    for name, (load, content, expected) in _samples().items():
        path = out / f"{name}.jpg"
        Image.fromarray(load()).save(path, "JPEG", quality=quality, optimize=True)
        written.append(path)
        rows.append(f"| `{path.name}` | {content} | {expected} |")
        logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
    import skimage

    (out / "SOURCES.md").write_text(
        "# Sample images\n\n"
        "Written by `python -m modelprep images` from the data bundled in scikit-image "
        f"{skimage.__version__}\n(`skimage.data`), re-encoded as JPEG; origins and licences as scikit-image "
        "documents them.\n\n"
        "| file | content and licence | top-1 of the bundled EfficientNet-Lite0 |\n|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    return written
