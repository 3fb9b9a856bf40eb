"""Image -> model input tensor, exactly as the model's manifest describes (decode, resize, crop, normalise).

Vectorised with Pillow and numpy: one resize, one crop, one fused multiply-add over the whole image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from agent_client.errors import FrameError

from .manifest import PreprocessSpec

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def decode_image(data: bytes | Path) -> Image.Image:
    """Fully decodes an image file or bytes; FrameError for missing, corrupt, truncated or unknown data."""
    name = str(data) if isinstance(data, Path) else f"{len(data)}-byte image"
    try:
        image = Image.open(data if isinstance(data, Path) else io.BytesIO(data))
        image.load()  # decode now, so a truncated file fails here and not in a later stage
    except FileNotFoundError:
        raise FrameError(f"{name} does not exist") from None
    except UnidentifiedImageError:
        raise FrameError(f"{name} is not an image Pillow can read (corrupt or unsupported format)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FrameError(f"{name} cannot be decoded: {exc}") from exc
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB from any mode (L, LA, P, RGBA, CMYK, I;16, ...), honouring the EXIF orientation."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        peak = wide.max() or 1.0
        image = Image.fromarray(np.clip(wide * (255.0 / peak), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (0, 0, 0))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


class Preprocessor:
    """Callable: PIL image -> contiguous batch tensor of the manifest's input shape and dtype."""

    def __init__(self, spec: PreprocessSpec, input_shape: tuple[int, ...]) -> None:
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self._resample = _RESAMPLE[spec.resample]
        order = [0, 1, 2] if spec.color_order == "RGB" else [2, 1, 0]
        self._order = np.array(order)
        mean = np.asarray(spec.mean, dtype=np.float32)[order]
        std = np.asarray(spec.std, dtype=np.float32)[order]
        # (x - mean) / std as one multiply-add: x * scale + shift
        self._scale = (1.0 / std).astype(np.float32)
        self._shift = (-mean / std).astype(np.float32)
        self._dtype = np.dtype(spec.dtype)

    def __call__(self, image: Image.Image) -> np.ndarray:
        try:
            pixels = self._crop(self._resize(to_rgb(image)))
        except (OSError, ValueError) as exc:
            raise FrameError(f"cannot preprocess a {image.mode} {image.size} image: {exc}") from exc
        array = np.asarray(pixels, dtype=np.float32)
        if self.spec.color_order == "BGR":
            array = array[..., ::-1]
        array = array * self._scale + self._shift
        if self.spec.layout == "NCHW":
            array = array.transpose(2, 0, 1)
        tensor = np.ascontiguousarray(array[np.newaxis], dtype=self._dtype)
        if tensor.shape != self.input_shape:
            raise FrameError(f"preprocessing produced {tensor.shape}, the model takes {self.input_shape}")
        return tensor

    def _resize(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if min(width, height) < 1:
            raise ValueError("the image is empty")
        scale = self.spec.resize_shorter / min(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return image.resize(size, self._resample) if size != image.size else image

    def _crop(self, image: Image.Image) -> Image.Image:
        crop_h, crop_w = self.spec.crop
        width, height = image.size
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        return image.crop((left, top, left + crop_w, top + crop_h))
