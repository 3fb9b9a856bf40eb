from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent_client.errors import FrameError, ManifestError
from component.preprocess import Preprocessor, decode_image
from modelpkg.manifest import PreprocessSpec

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
IDENTITY = replace(SPEC, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
NCHW, NHWC = (1, 3, 4, 4), (1, 4, 4, 3)


def solid(color: tuple[int, int, int], size: tuple[int, int] = (16, 8)) -> Image.Image:
    return Image.new("RGB", size, color)


def random_rgb(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize(("layout", "shape"), [("NCHW", NCHW), ("NHWC", NHWC)])
def test_output_has_the_model_shape_dtype_and_is_contiguous(layout: str, shape: tuple[int, ...]) -> None:
    tensor = Preprocessor(replace(SPEC, layout=layout), shape)(solid((1, 2, 3), (37, 23)))
    assert tensor.shape == shape and tensor.dtype == np.float32 and tensor.flags.c_contiguous


def test_normalisation_is_exactly_x_minus_mean_over_std_per_channel() -> None:
    # image size == crop == resize_shorter: no resampling, so every value is known
    pixels = random_rgb((4, 4))
    spec = replace(SPEC, resize_shorter=4, mean=(127.0, 100.0, 3.5), std=(128.0, 64.0, 0.5))
    tensor = Preprocessor(spec, NCHW)(Image.fromarray(pixels))
    expected = (pixels.astype(np.float64) - [127.0, 100.0, 3.5]) / [128.0, 64.0, 0.5]
    np.testing.assert_allclose(tensor[0], expected.transpose(2, 0, 1), rtol=0, atol=2e-5)


def test_the_bundled_models_normalisation_maps_0_127_255() -> None:
    tensor = Preprocessor(SPEC, NCHW)(solid((255, 127, 0)))
    assert tensor[0, :, 0, 0].tolist() == [(255 - 127) / 128, 0.0, -127 / 128]
    assert np.all(tensor[0] == tensor[0, :, :1, :1])


def test_nhwc_is_the_nchw_tensor_transposed() -> None:
    image = Image.fromarray(random_rgb((11, 9), seed=1))
    nchw = Preprocessor(SPEC, NCHW)(image)
    nhwc = Preprocessor(replace(SPEC, layout="NHWC"), NHWC)(image)
    np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))


def test_bgr_reverses_the_channels_and_applies_mean_and_std_given_as_rgb() -> None:
    spec = replace(SPEC, mean=(10.0, 20.0, 30.0), std=(1.0, 2.0, 4.0), color_order="BGR", layout="NHWC")
    tensor = Preprocessor(spec, NHWC)(solid((110, 120, 130)))
    # channel 0 is blue (130 - 30) / 4, channel 1 green (120 - 20) / 2, channel 2 red (110 - 10) / 1
    assert tensor[0, 0, 0].tolist() == [25.0, 50.0, 100.0]


def test_centre_crop_after_resizing_the_shorter_side() -> None:
    image = Image.new("RGB", (32, 16), (0, 0, 0))
    image.paste((255, 255, 255), (12, 0, 20, 16))  # a white band in the middle
    tensor = Preprocessor(replace(IDENTITY, resample="nearest"), NCHW)(image)  # 32x16 -> 16x8 -> x 6..10
    np.testing.assert_array_equal(tensor[0, 0, 0], [255, 255, 255, 255])


def test_portrait_images_are_cropped_vertically() -> None:
    image = Image.new("RGB", (16, 32), (0, 0, 0))
    image.paste((255, 255, 255), (0, 12, 16, 20))  # a white band across the middle
    tensor = Preprocessor(replace(IDENTITY, resample="nearest"), NCHW)(image)
    np.testing.assert_array_equal(tensor[0, 0, :, 0], [255, 255, 255, 255])


def test_the_input_image_is_left_unchanged() -> None:
    image = solid((9, 8, 7), (20, 10))
    before = image.tobytes()
    Preprocessor(SPEC, NCHW)(image)
    assert image.size == (20, 10) and image.mode == "RGB" and image.tobytes() == before


@pytest.mark.parametrize(
    ("image", "rgb"),
    [
        (Image.new("L", (16, 8), 90), (90, 90, 90)),
        (Image.new("1", (16, 8), 1), (255, 255, 255)),
        (solid((204, 102, 51)).convert("P"), (204, 102, 51)),  # a colour of the web palette
        (Image.new("I;16", (16, 8), 65535), (255, 255, 255)),
        (Image.new("I;16", (16, 8), 257 * 40), (40, 40, 40)),
        (Image.new("I", (16, 8), 257 * 200), (200, 200, 200)),
        (Image.new("F", (16, 8), 33.0), (33, 33, 33)),
        (Image.new("RGBA", (16, 8), (200, 100, 50, 255)), (200, 100, 50)),
        (Image.new("RGBA", (16, 8), (200, 100, 50, 0)), (0, 0, 0)),  # transparent: onto black
        (Image.new("LA", (16, 8), (90, 0)), (0, 0, 0)),
        (Image.new("CMYK", (16, 8), (0, 0, 0, 0)), (255, 255, 255)),
    ],
    ids=lambda value: value.mode if isinstance(value, Image.Image) else str(value),
)
def test_any_image_mode_becomes_8_bit_rgb(image: Image.Image, rgb: tuple[int, int, int]) -> None:
    tensor = Preprocessor(IDENTITY, NCHW)(image)
    assert tensor.shape == NCHW
    np.testing.assert_allclose(tensor[0, :, 0, 0], rgb, atol=1.0)


def test_a_palette_image_with_a_transparent_index_is_composited() -> None:
    image = Image.new("P", (16, 8), 1)
    image.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    image.info["transparency"] = 1
    tensor = Preprocessor(IDENTITY, NCHW)(image)
    assert np.all(tensor == 0.0)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (16, 8), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 8, 8))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180 degrees: the white half belongs on the right
    spec = replace(IDENTITY, resize_shorter=16, crop=(8, 16))
    tensor = Preprocessor(spec, (1, 3, 8, 16))(decode_image(jpeg(image, exif=exif, quality=100)))
    # 16x8 -> 32x16, centre 16x8: x 8..24 of the upright image, white from x 16 on
    assert tensor[0, 0, 4, 2] < 30 and tensor[0, 0, 4, 13] > 225


def test_decode_image_reads_bytes_and_files(tmp_path: Path) -> None:
    data = jpeg(solid((10, 200, 30)), quality=95)
    (tmp_path / "frame.jpg").write_bytes(data)
    for source in (data, tmp_path / "frame.jpg"):
        image = decode_image(source)
        assert image.size == (16, 8) and image.mode == "RGB"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"definitely not an image", "not an image Pillow can read"),
        (b"", "not an image Pillow can read"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot be decoded|not an image"),
    ],
)
def test_corrupt_bytes_raise_frame_error(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_image(data)


def test_a_truncated_jpeg_fails_at_decode_not_later() -> None:
    data = jpeg(Image.effect_noise((64, 64), 50).convert("RGB"), quality=90)
    with pytest.raises(FrameError, match=r"cannot be decoded.*truncated"):
        decode_image(data[: len(data) // 2])


def test_missing_files_and_folders_raise_frame_error(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match="does not exist"):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(FrameError, match="cannot be decoded"):
        decode_image(tmp_path)


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        (SPEC, (1, 3, 5, 5), r"a NCHW crop of \[4, 4\] gives \[1, 3, 4, 4\]"),
        (SPEC, NHWC, "gives"),
        (replace(SPEC, layout="NHWC"), NCHW, "gives"),
        (
            replace(SPEC, resample="lanczos"),
            NCHW,
            "resample 'lanczos' is not one of nearest, bilinear, bicubic",
        ),
        (replace(SPEC, color_order="RGBA"), NCHW, "color_order"),
        (replace(SPEC, resize_shorter=3), NCHW, "smaller than the crop"),
        (replace(SPEC, dtype="float99"), NCHW, "not a numpy dtype"),
    ],
)
def test_a_spec_that_cannot_feed_the_model_is_refused_when_built(
    spec: PreprocessSpec, shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ManifestError, match=message):
        Preprocessor(spec, shape)
