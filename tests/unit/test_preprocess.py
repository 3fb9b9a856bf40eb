from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent_client.errors import FrameError
from component.manifest import PreprocessSpec
from component.preprocess import Preprocessor, decode_image

SPEC = PreprocessSpec(
    resize_shorter=8,
    crop=(4, 4),
    resample="bilinear",
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    layout="NCHW",
    color_order="RGB",
    dtype="float32",
)


def solid(color: tuple[int, int, int], size: tuple[int, int] = (16, 8)) -> Image.Image:
    return Image.new("RGB", size, color)


def test_output_has_the_model_shape_dtype_and_is_contiguous() -> None:
    tensor = Preprocessor(SPEC, (1, 3, 4, 4))(solid((1, 2, 3), (37, 23)))
    assert tensor.shape == (1, 3, 4, 4) and tensor.dtype == np.float32 and tensor.flags.c_contiguous


def test_normalisation_is_x_minus_mean_over_std_per_channel() -> None:
    tensor = Preprocessor(SPEC, (1, 3, 4, 4))(solid((255, 127, 0)))
    np.testing.assert_allclose(tensor[0, :, 0, 0], [(255 - 127) / 128, 0.0, -127 / 128], rtol=1e-6)
    assert np.all(tensor[0, 0] == tensor[0, 0, 0, 0])


def test_per_channel_mean_and_std_follow_the_colour_order() -> None:
    spec = replace(SPEC, mean=(10.0, 20.0, 30.0), std=(1.0, 2.0, 4.0), color_order="BGR", layout="NHWC")
    tensor = Preprocessor(spec, (1, 4, 4, 3))(solid((110, 120, 130)))
    # BGR order: channel 0 is blue (130 - 30) / 4, channel 2 is red (110 - 10) / 1
    np.testing.assert_allclose(tensor[0, 0, 0], [25.0, 50.0, 100.0])


def test_centre_crop_after_resizing_the_shorter_side() -> None:
    image = Image.new("RGB", (32, 16), (0, 0, 0))
    image.paste((255, 255, 255), (12, 0, 20, 16))  # a white band in the middle third
    spec = replace(SPEC, resample="nearest", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    tensor = Preprocessor(spec, (1, 3, 4, 4))(image)  # 32x16 -> 16x8 -> centre 4x4 = x 6..10
    np.testing.assert_array_equal(tensor[0, 0, 0], [255, 255, 255, 255])


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_any_image_mode_becomes_rgb(mode: str) -> None:
    image = solid((200, 100, 50)).convert(mode) if mode != "I;16" else Image.new("I;16", (16, 8), 4000)
    tensor = Preprocessor(SPEC, (1, 3, 4, 4))(image)
    assert tensor.shape == (1, 3, 4, 4) and np.isfinite(tensor).all()


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (16, 8), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 8, 8))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180 degrees: the white half belongs on the right
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=100)
    spec = replace(SPEC, resize_shorter=8, crop=(8, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    tensor = Preprocessor(spec, (1, 3, 8, 16))(decode_image(buffer.getvalue()))
    assert tensor[0, 0, 4, 1] < 30 and tensor[0, 0, 4, 14] > 225


def test_corrupt_truncated_and_missing_files_raise_frame_error(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match="not an image"):
        decode_image(b"definitely not an image")
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, "JPEG")
    with pytest.raises(FrameError, match="cannot be decoded"):
        decode_image(buffer.getvalue()[:400])
    with pytest.raises(FrameError, match="does not exist"):
        decode_image(tmp_path / "missing.jpg")


def test_a_shape_that_does_not_match_the_model_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="the model takes"):
        Preprocessor(SPEC, (1, 3, 5, 5))(solid((0, 0, 0)))
