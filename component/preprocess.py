"""Image -> model input tensor, exactly as the model's manifest describes (decode, resize, crop, normalise).

Contract of `Preprocessor(spec, input_shape)(image)`:

1. any Pillow mode becomes 8-bit RGB, upright by its EXIF orientation (see `to_rgb`);
2. the shorter side is resized to `spec.resize_shorter` with `spec.resample` (aspect ratio kept, sizes
   rounded to the nearest pixel), then the centre `spec.crop` (h, w) is cut out (odd margins: one more
   pixel on the right / bottom);
3. each channel becomes (x - mean) / std on its 0..255 value, mean and std given as [r, g, b] whatever
   the order, and the channels are put in `spec.color_order`;
4. the result is laid out as `spec.layout` (NCHW or NHWC) with a batch dimension of 1: a C-contiguous
   array of dtype `spec.dtype` and exactly `input_shape`.

Vectorised with Pillow and numpy: one resize, one crop, one fused multiply-add over the whole crop.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from agent_client.errors import FrameError, ManifestError
from modelpkg.manifest import PreprocessSpec

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_ORIENTATION = 0x0112  # EXIF tag; 1 means upright already
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def decode_image(data: bytes | Path) -> Image.Image:
    """Fully decodes an image file or its bytes; FrameError for missing, unreadable, corrupt, truncated or
    unsupported data. The whole image is decoded here (`load()`), so a truncated file fails now rather than
    in a later stage, and no file stays open."""
    name = str(data) if isinstance(data, Path) else f"{len(data)}-byte image"
    try:
        raw = data.read_bytes() if isinstance(data, Path) else data
        image = Image.open(io.BytesIO(raw))
        image.load()
    except FileNotFoundError:
        raise FrameError(f"{name} does not exist") from None
    except UnidentifiedImageError:
        raise FrameError(f"{name} is not an image Pillow can read (corrupt or unsupported format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # OSError covers truncated data and unreadable files; some decoders raise SyntaxError on bad headers
        raise FrameError(f"{name} cannot be decoded: {exc}") from exc
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB from any mode, honouring the EXIF orientation.

    16/32-bit integer grey (I;16, I) is scaled from the full 16-bit range (value / 257, clipped); float grey
    (F) is taken as 0..255 and clipped. Transparent pixels (RGBA, LA, PA, P with transparency) are composited
    onto black. Everything else (L, 1, P, CMYK, YCbCr, ...) goes through Pillow's own conversion.
    """
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_GREY or image.mode == "F":
        wide = np.asarray(image, dtype=np.float32)
        if image.mode != "F":
            wide = wide / 257.0
        image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def expected_shape(spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """The batch tensor shape the spec produces: (1, 3, h, w) for NCHW, (1, h, w, 3) for NHWC."""
    height, width = spec.crop
    return (1, 3, height, width) if spec.layout == "NCHW" else (1, height, width, 3)


class Preprocessor:
    """Callable: PIL image -> contiguous batch tensor of the manifest's input shape and dtype.

    Built once per model; ManifestError at construction if the spec is unusable or does not produce
    `input_shape`. A frame that cannot be converted raises FrameError.
    """

    def __init__(self, spec: PreprocessSpec, input_shape: tuple[int, ...]) -> None:
        problems = [
            f"{field} {value!r} is not one of {', '.join(choices)}"
            for field, value, choices in (
                ("resample", spec.resample, tuple(_RESAMPLE)),
                ("layout", spec.layout, ("NCHW", "NHWC")),
                ("color_order", spec.color_order, ("RGB", "BGR")),
            )
            if value not in choices
        ]
        if not problems and expected_shape(spec) != tuple(input_shape):
            problems.append(f"a {spec.layout} crop of {list(spec.crop)} gives {list(expected_shape(spec))}")
        if not problems and spec.resize_shorter < max(spec.crop):
            problems.append(
                f"resize_shorter {spec.resize_shorter} is smaller than the crop {list(spec.crop)}"
            )
        try:
            self._dtype = np.dtype(spec.dtype)
        except TypeError:
            problems.append(f"dtype {spec.dtype!r} is not a numpy dtype")
        if problems:
            raise ManifestError(
                f"the preprocessing cannot feed input shape {list(input_shape)}: {'; '.join(problems)}; "
                f"fix the model's manifest.json"
            )
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self._resample = _RESAMPLE[spec.resample]
        self._bgr = spec.color_order == "BGR"
        # (x - mean) / std as one fused multiply-add, x * scale + shift, broadcast over (h, w, channel);
        # mean and std are [r, g, b], so for BGR they are reversed along with the channels
        order = [2, 1, 0] if self._bgr else [0, 1, 2]
        mean = np.asarray(spec.mean, dtype=np.float64)[order]
        std = np.asarray(spec.std, dtype=np.float64)[order]
        self._scale = (1.0 / std).astype(np.float32)
        self._shift = (-mean / std).astype(np.float32)

    def __call__(self, image: Image.Image) -> np.ndarray:
        try:
            pixels = self._crop(self._resize(to_rgb(image)))
        except (OSError, ValueError) as exc:
            raise FrameError(f"cannot preprocess a {image.mode} {image.size} image: {exc}") from exc
        array = np.asarray(pixels, dtype=np.float32)  # (h, w, 3) RGB
        if self._bgr:
            array = array[..., ::-1]
        array = array * self._scale + self._shift
        if self.spec.layout == "NCHW":
            array = array.transpose(2, 0, 1)
        return np.ascontiguousarray(array[np.newaxis], dtype=self._dtype)

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
