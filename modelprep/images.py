"""Sample photos with known content, from the scikit-image wheel (nothing downloaded), written as JPEG.

SOURCES.md is written from what scikit-image itself states about each image: the docstring of its
`skimage.data` loader (credit paragraphs, the Notes section with the licence, the references).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

JPEG_QUALITY = 92  # at 90 chelsea's top two classes (0.01 apart) swap; 92 keeps the reference order
SOURCES_FILE = "SOURCES.md"
_CREDIT = re.compile(r"courtesy|created by|captured by|photographer", re.IGNORECASE)
_SECTION = re.compile(r"^(\w[\w ]*)\n-{3,}$", re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    name: str  # the JPEG's file name without .jpg
    loader: str  # the skimage.data function
    content: str
    expected: str  # the reference top-1 ImageNet class of EfficientNet-Lite0 (ONNX Runtime, FP32)
    item: int | None = None  # for loaders that return a tuple of images: which one


SAMPLES = (
    Sample("chelsea", "chelsea", "a tabby cat", "tiger cat"),
    Sample("coffee", "coffee", "a cup of espresso", "espresso"),
    Sample("rocket", "rocket", "Falcon 9 launch", "missile"),
    Sample("motorcycle", "stereo_motorcycle", "a motorcycle (left view)", "moped", item=0),
    Sample("camera", "camera", "a photographer with a camera on a tripod, grayscale", "tripod"),
)


def _sections(doc: str) -> dict[str, str]:
    """A numpydoc docstring split into its summary ("") and named sections (Notes, References, ...)."""
    parts = _SECTION.split(doc)
    sections = {"": parts[0]}
    sections.update(zip(parts[1::2], parts[2::2], strict=True))
    return sections


def _plain(text: str) -> str:
    """One line of plain Markdown from reStructuredText: links as `text (url)`, directives as words."""
    text = re.sub(r"`([^`<]+?)\s*<([^>]+)>`__?", r"\1 (\2)", text)
    text = re.sub(r"\.\. versionchanged:: (\S+)", r"(changed in scikit-image \1:)", text)
    text = re.sub(r"\.\. (\[\d+\])", r"\1", text)
    text = re.sub(r"(\[\d+\])_", r"\1", text)
    return " ".join(text.split())


def provenance(loader: Callable[..., object]) -> tuple[str, str]:
    """(licence, what scikit-image says) for one skimage.data loader, read from its docstring."""
    doc = inspect.getdoc(loader) or ""
    sections = _sections(doc)
    paragraphs = [p for p in sections[""].split("\n\n")[1:] if _CREDIT.search(p)]
    notes = sections.get("Notes", "")
    parts = [doc.splitlines()[0], *paragraphs, notes, sections.get("References", "")]
    said = " ".join(_plain(part) for part in parts if part.strip())
    lowered = notes.lower()
    if "cc0" in lowered:
        licence = "CC0"
    elif "public domain" in lowered:
        licence = "public domain"
    else:
        licence = "none stated by scikit-image (shipped in its BSD-3-Clause wheel)"
    return licence, said


def write_images(out: Path, quality: int = JPEG_QUALITY) -> list[Path]:
    """Writes out/<name>.jpg for each sample and out/SOURCES.md; returns the JPEG paths."""
    import skimage
    from PIL import Image
    from skimage import data

    out.mkdir(parents=True, exist_ok=True)
    written, rows, notes = [], [], []
    for sample in SAMPLES:
        loader = getattr(data, sample.loader)
        loaded = loader()
        pixels = np.asarray(loaded if sample.item is None else loaded[sample.item])
        path = out / f"{sample.name}.jpg"
        Image.fromarray(pixels).save(path, "JPEG", quality=quality, optimize=True)
        written.append(path)
        licence, said = provenance(loader)
        height, width = pixels.shape[:2]
        rows.append(
            f"| `{path.name}` | {sample.content} | `skimage.data.{sample.loader}()` | {width}x{height} "
            f"| {licence} | {sample.expected} |"
        )
        notes.append(f"- `{path.name}`: {said}")
        logger.info("wrote %s (%d bytes, %s)", path, path.stat().st_size, licence)
    (out / SOURCES_FILE).write_text(
        "# Sample images\n\n"
        "Written by `python -m modelprep images` from the images bundled in scikit-image "
        f"{skimage.__version__}\n(`skimage.data`), re-encoded as JPEG at quality {quality}. Licences and "
        "credits as scikit-image\nstates them in its loaders' docstrings, quoted below.\n\n"
        "| file | content | source | size | licence | expected top-1 (EfficientNet-Lite0) |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "## What scikit-image says about each image\n\n" + "\n".join(notes) + "\n",
        encoding="utf-8",
    )
    return written
