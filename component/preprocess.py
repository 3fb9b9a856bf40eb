"""Image -> model input tensor, exactly as the model's manifest describes (decode, resize, crop, normalise).

Contract of `Preprocessor(spec, input_shape)(image)`:

0. `image` is a PIL image, either loaded or opened but not yet loaded (`Image.open` done, header parsed,
   pixels not decoded: what component.sources.open_image hands over). The pixels are decoded exactly
   once: here for a not-yet-loaded image, whose decoding failures (truncated, corrupt) raise FrameError.
   A not-yet-loaded JPEG at least twice DRAFT_MARGIN x the resized size in both directions is decoded at
   a reduced DCT scale (`Image.draft`: 1/2, 1/4 or 1/8) that still leaves at least DRAFT_MARGIN x the
   resized size, so that bilinear resampling, not the DCT scaling, does the last reduction;
1. any Pillow mode becomes 8-bit RGB, upright by its EXIF orientation (see `to_rgb`);
2. the shorter side is resized to `spec.resize_shorter` with `spec.resample` (aspect ratio kept, sizes
   rounded to the nearest pixel), then the centre `spec.crop` (h, w) is cut out (odd margins: one more
   pixel on the right / bottom). Done as one resize of the crop's source box straight to the crop size
   (`Image.resize(size, box=...)`): the same filter and pixel positions as resizing the whole image and
   cropping (values within one level of 255, from float rounding), with work and memory that depend on
   the crop, never on the image's aspect ratio (a 1x20000 image gives a 224x224 crop, not gigabytes);
3. `spec.in_model` false: each channel becomes (x - mean) / std on its 0..255 value, mean and std given
   as [r, g, b] whatever the order; true: the 0..255 values go as they are (the model's graph
   normalises), for uint8 with no float work at all. The channels are put in `spec.color_order`;
4. the result is laid out as `spec.layout` (NCHW or NHWC) with a batch dimension of 1: a C-contiguous
   array of dtype `spec.dtype` and exactly `input_shape`.

A loaded input image is left unchanged; a not-yet-loaded one is decoded in place (its size may then be
the reduced draft size).
"""

from __future__ import annotations

import io
import logging
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from agent_client.errors import FrameError, ManifestError
from modelpkg.manifest import PreprocessSpec

logger = logging.getLogger(__name__)

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_ORIENTATION = 0x0112  # EXIF tag; 1 means upright already
_QUARTER_TURNS = (5, 6, 7, 8)  # orientations that swap width and height
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# What Pillow's decoders raise for bad data: OSError (truncated, broken stream), ValueError, SyntaxError and
# EOFError (broken chunks and headers), struct.error and IndexError (short headers read while loading).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)
# A JPEG is decoded at a reduced DCT scale only down to DRAFT_MARGIN x the resized size: measured on the
# sample images blown up to 1920x1080, margin 2 keeps the scores within 0.01 of a full decode, margin 1
# (decoding down to the resized size itself) changes them by up to 0.04 for 15% less time.
DRAFT_MARGIN = 2


def decode_image(data: bytes | Path) -> Image.Image:
    """Fully decodes an image file or its bytes; FrameError for missing, unreadable, corrupt, truncated or
    unsupported data. The whole image is decoded here (`load()`), so a truncated file fails now rather than
    in a later stage, and no file stays open. (Frame sources open images without decoding them instead:
    component.sources.open_image.)"""
    name = str(data) if isinstance(data, Path) else f"{len(data)}-byte image"
    try:
        image = open_bytes(data.read_bytes() if isinstance(data, Path) else data)
    except FileNotFoundError:
        raise FrameError(f"{name} does not exist") from None
    except UnidentifiedImageError:
        raise FrameError(f"{name} is not an image Pillow can read (corrupt or unsupported format)") from None
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
        raise FrameError(f"{name} cannot be decoded: {exc}") from exc
    _load(image, name)
    return image


def open_bytes(data: bytes) -> Image.Image:
    """Image.open of an image file's bytes, set to hand the decoder all of them in one call: Pillow's
    default of 64 KiB pieces joins each unread rest to the next piece and calls the decoder again (measured:
    -4% of a 1920x1080 JPEG's decode, about -2% of its preprocessing; the same pixels).
    UnidentifiedImageError and the rest as Image.open."""
    image = Image.open(io.BytesIO(data))
    if isinstance(image, ImageFile.ImageFile):
        image.decodermaxblock = max(image.decodermaxblock, len(data))
    return image


def _load(image: Image.Image, name: str) -> None:
    """Decodes the pixels of an opened image (a no-op once loaded); FrameError for bad data."""
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        image.close()
        raise FrameError(f"{name} cannot be decoded: {exc}") from exc


def pending_decode(image: Image.Image) -> bool:
    """True for an image opened but not yet decoded (its tiles are still to be read)."""
    return isinstance(image, ImageFile.ImageFile) and bool(image.tile)


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB from any mode, honouring the EXIF orientation.

    16/32-bit integer grey (I;16, I) is scaled from the full 16-bit range (value / 257, clipped); float grey
    (F) is taken as 0..255 and clipped. Transparent pixels (RGBA, LA, PA, P with transparency) are composited
    onto black. Everything else (L, 1, P, CMYK, YCbCr, ...) goes through Pillow's own conversion.
    """
    image = to_resizable(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def to_resizable(image: Image.Image) -> Image.Image:
    """Upright RGB, or L for grey images (resized as grey and made RGB after: the same values for a third
    of the work); see `to_rgb` for the conversions."""
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in _WIDE_GREY or image.mode == "F":
        wide = np.asarray(image, dtype=np.float32)
        if image.mode != "F":
            wide = wide / 257.0
        return Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
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


def normalisation(
    mean: tuple[float, float, float], std: tuple[float, float, float], color_order: str = "RGB"
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) float32 per channel in color_order, so that x * scale + shift = (x - mean) / std;
    mean and std are [r, g, b]. The float path here and the normalisation prepended to the bundled models'
    graphs (modelprep.prologue) both use these constants, so both give the same float32 values."""
    order = [2, 1, 0] if color_order == "BGR" else [0, 1, 2]
    mean_ = np.asarray(mean, dtype=np.float64)[order]
    std_ = np.asarray(std, dtype=np.float64)[order]
    return (1.0 / std_).astype(np.float32), (-mean_ / std_).astype(np.float32)


def crop_box(
    size: tuple[int, int], resize_shorter: int, crop: tuple[int, int]
) -> tuple[float, float, float, float]:
    """The source box (left, top, right, bottom, in the image's pixel coordinates) of the centre crop
    (h, w) of the image resized so that its shorter side is resize_shorter (sizes rounded)."""
    width, height = size
    scale = resize_shorter / min(width, height)
    resized_w, resized_h = max(1, round(width * scale)), max(1, round(height * scale))
    crop_h, crop_w = crop
    left, top = (resized_w - crop_w) // 2, (resized_h - crop_h) // 2
    sx, sy = width / resized_w, height / resized_h
    return (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)


class Preprocessor:
    """Callable: PIL image -> contiguous batch tensor of the manifest's input shape and dtype.

    Built once per model; ManifestError at construction if the spec is unusable or does not produce
    `input_shape`. A frame that cannot be decoded or converted raises FrameError.
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
        # (x - mean) / std as x * scale + shift, one channel plane at a time
        self._scale, self._shift = normalisation(spec.mean, spec.std, spec.color_order)

    def __call__(self, image: Image.Image) -> np.ndarray:
        try:
            pixels = self.resized_crop(image)
        except FrameError:
            raise
        except _DECODE_ERRORS as exc:
            raise FrameError(f"cannot preprocess a {image.mode} {image.size} image: {exc}") from exc
        return self.tensor(pixels)

    def resized_crop(self, image: Image.Image) -> np.ndarray:
        """The resized centre crop as an (h, w, 3) uint8 RGB array; decodes a not-yet-loaded image."""
        if min(image.size) < 1:
            raise ValueError("the image is empty")
        size, scale = image.size, 1.0  # the image's own size, and the DCT scale it is decoded at
        if pending_decode(image):
            scale = self._draft(image)
            _load(image, f"{image.format or 'the'} {size[0]}x{size[1]} image")
        if image.getexif().get(_ORIENTATION, 1) in _QUARTER_TURNS:
            size = (size[1], size[0])
        upright = to_resizable(image)
        left, top, right, bottom = crop_box(size, self.spec.resize_shorter, self.spec.crop)
        box = (left * scale, top * scale, right * scale, bottom * scale)
        crop_h, crop_w = self.spec.crop
        if scale == 1.0 and min(size) == self.spec.resize_shorter:
            resized = upright.crop(box)  # already at the resized size: a plain (integer) crop
        else:
            resized = upright.resize((crop_w, crop_h), self._resample, box=box)
        if resized.mode != "RGB":
            resized = resized.convert("RGB")
        return np.asarray(resized)

    def _draft(self, image: Image.Image) -> float:
        """Asks a not-yet-loaded JPEG for a reduced DCT scale when it is at least twice DRAFT_MARGIN x the
        resized size; returns the scale the decoder will use (1.0: full size)."""
        width, height = image.size
        scale = self.spec.resize_shorter / min(width, height)
        wanted = (
            max(1, round(width * scale)) * DRAFT_MARGIN,
            max(1, round(height * scale)) * DRAFT_MARGIN,
        )
        if wanted[0] * 2 > width or wanted[1] * 2 > height:
            return 1.0
        drafted = image.draft("RGB", wanted)
        if drafted is None:  # not a JPEG
            return 1.0
        return float(drafted[1][2]) / width

    def tensor(self, pixels: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 RGB -> the batch tensor of the manifest's layout, dtype and normalisation."""
        if self._bgr:
            pixels = pixels[..., ::-1]
        if self.spec.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        if self.spec.in_model:
            return np.ascontiguousarray(pixels[np.newaxis], dtype=self._dtype)
        if self.spec.layout == "NCHW":  # one contiguous plane per channel: no broadcasting over axis 3
            out = np.empty(pixels.shape, dtype=np.float32)
            for channel in range(3):
                np.multiply(pixels[channel], self._scale[channel], out=out[channel])
                out[channel] += self._shift[channel]
        else:
            out = pixels * self._scale + self._shift
        return np.ascontiguousarray(out[np.newaxis], dtype=self._dtype)
