from __future__ import annotations

import io
import resource
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from agent_client.errors import FrameError, ManifestError
from component.preprocess import DRAFT_MARGIN, Preprocessor, decode_image, open_bytes, pending_decode
from component.sources import open_image as open_frame
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


# --- uint8 for models that normalise in their graph (in_model), crop-box resize, reduced-scale decode ---

UINT8 = replace(SPEC, layout="NHWC", dtype="uint8", in_model=True)
BUNDLED = replace(UINT8, resize_shorter=256, crop=(224, 224))  # the bundled packages' preprocessing
BUNDLED_SHAPE = (1, 224, 224, 3)


def full_resize_then_crop(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The straightforward way: resize the whole image, then cut out the centre."""
    width, height = image.size
    scale = spec.resize_shorter / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.convert("RGB").resize(size, Image.Resampling[spec.resample.upper()])
    crop_h, crop_w = spec.crop
    left, top = (size[0] - crop_w) // 2, (size[1] - crop_h) // 2
    return np.asarray(resized.crop((left, top, left + crop_w, top + crop_h)))


def smooth_rgb(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A photo-like image: random colours at a coarse grid, interpolated."""
    coarse = Image.fromarray(random_rgb((max(2, size[0] // 16), max(2, size[1] // 16)), seed))
    return coarse.resize(size, Image.Resampling.BICUBIC)


def test_uint8_in_model_output_is_the_crops_pixels_unnormalised() -> None:
    pixels = random_rgb((4, 4))
    tensor = Preprocessor(replace(UINT8, resize_shorter=4), NHWC)(Image.fromarray(pixels))
    assert tensor.dtype == np.uint8 and tensor.shape == NHWC and tensor.flags.c_contiguous
    np.testing.assert_array_equal(tensor[0], pixels)


@pytest.mark.parametrize(
    ("spec", "shape", "expected"),
    [
        (replace(UINT8, layout="NCHW"), NCHW, lambda p: p.transpose(2, 0, 1)),
        (replace(UINT8, color_order="BGR"), NHWC, lambda p: p[..., ::-1]),
        (replace(UINT8, dtype="float32"), NHWC, lambda p: p.astype(np.float32)),  # float, 0..255
    ],
    ids=["nchw", "bgr", "float32-in-model"],
)
def test_in_model_layout_colour_order_and_dtype_follow_the_manifest(
    spec: PreprocessSpec, shape: tuple[int, ...], expected: Any
) -> None:
    pixels = random_rgb((4, 4), seed=3)
    tensor = Preprocessor(replace(spec, resize_shorter=4), shape)(Image.fromarray(pixels))
    assert tensor.dtype == np.dtype(spec.dtype) and tensor.flags.c_contiguous
    np.testing.assert_array_equal(tensor[0], expected(pixels))


def test_the_float_path_is_the_uint8_path_normalised() -> None:
    image = Image.fromarray(random_rgb((37, 23), seed=4))
    floats = Preprocessor(replace(SPEC, layout="NHWC"), NHWC)(image)
    pixels = Preprocessor(UINT8, NHWC)(image)
    np.testing.assert_array_equal(floats, (pixels.astype(np.float32) - 127) / 128)


@pytest.mark.parametrize(
    "size", [(451, 300), (300, 451), (1000, 257), (257, 1000), (1920, 1080), (225, 400), (3, 2000)]
)
def test_resizing_the_crops_box_equals_resizing_the_whole_image_then_cropping(size: tuple[int, int]) -> None:
    image = Image.fromarray(random_rgb(size, seed=5))
    mine = Preprocessor(BUNDLED, BUNDLED_SHAPE)(image)[0].astype(np.int16)
    theirs = full_resize_then_crop(image, BUNDLED).astype(np.int16)
    # float rounding of the filter positions only (measured: up to a quarter of the values, by one level)
    assert np.abs(mine - theirs).max() <= 1 and np.abs(mine - theirs).mean() < 0.3


def test_bicubic_crop_box_matches_the_whole_image_resize_on_a_smooth_image() -> None:
    spec = replace(BUNDLED, resample="bicubic")
    image = smooth_rgb((300, 451))
    mine = Preprocessor(spec, BUNDLED_SHAPE)(image)[0].astype(np.int16)
    # bicubic overshoots are clamped to 0..255 between the two passes: two levels on a smooth image
    assert np.abs(mine - full_resize_then_crop(image, spec)).max() <= 2


def test_an_image_at_the_resized_size_is_only_cropped() -> None:
    pixels = random_rgb((256, 300), seed=6)
    tensor = Preprocessor(BUNDLED, BUNDLED_SHAPE)(Image.fromarray(pixels))
    np.testing.assert_array_equal(tensor[0], pixels[38:262, 16:240])


@pytest.mark.parametrize("size", [(1, 20000), (20000, 1)])
def test_a_1_pixel_wide_image_is_processed_with_bounded_memory(size: tuple[int, int]) -> None:
    """Resizing the whole 1x20000 image to a shorter side of 256 would make 256x5120000 pixels (3.9 GB);
    only the crop's box is resized, to 224x224."""
    ramp = np.linspace(0, 255, max(size)).astype(np.uint8)
    grey = ramp.reshape(size[1], size[0])
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tensor = Preprocessor(BUNDLED, BUNDLED_SHAPE)(Image.fromarray(np.stack([grey] * 3, axis=-1)))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert tensor.shape == BUNDLED_SHAPE and grown_mb < 50
    # the crop's box is the middle 0.875 pixel of the ramp (224 of the 5120000 resized pixels)
    middle = ramp[len(ramp) // 2 - 1 : len(ramp) // 2 + 1].astype(np.int16)
    assert middle.min() - 1 <= tensor.min() and tensor.max() <= middle.max() + 1


def test_grey_images_are_resized_as_grey_with_the_same_values() -> None:
    grey = Image.fromarray(random_rgb((300, 200), seed=7)[..., 0])
    tensor = Preprocessor(BUNDLED, BUNDLED_SHAPE)(grey)
    np.testing.assert_array_equal(tensor, Preprocessor(BUNDLED, BUNDLED_SHAPE)(grey.convert("RGB")))


def open_image(data: bytes, max_pixels: int = 40_000_000) -> Image.Image:
    """Opened, not decoded: what a frame source hands over."""
    return open_frame(data, "frame", max_pixels)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each decoder Pillow creates to read pixels (one per tile; a JPEG has one)."""
    decoders: list[str] = []
    original = Image._getdecoder

    def counting(mode: str, decoder_name: str, *args: Any, **kwargs: Any) -> Any:
        decoders.append(decoder_name)
        return original(mode, decoder_name, *args, **kwargs)

    monkeypatch.setattr(Image, "_getdecoder", counting)
    return decoders


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_not_yet_loaded_image_is_decoded_exactly_once(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    smooth_rgb((640, 480)).save(buffer, fmt)
    image = open_image(buffer.getvalue())
    decoders = count_decodes(monkeypatch)
    assert pending_decode(image) and decoders == []
    tensor = Preprocessor(BUNDLED, BUNDLED_SHAPE)(image)
    assert tensor.shape == BUNDLED_SHAPE and len(decoders) == 1 and not pending_decode(image)
    loaded = decode_image(buffer.getvalue())
    np.testing.assert_array_equal(tensor, Preprocessor(BUNDLED, BUNDLED_SHAPE)(loaded))


def test_a_loaded_image_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    image = decode_image(jpeg(smooth_rgb((640, 480))))
    decoders = count_decodes(monkeypatch)
    Preprocessor(BUNDLED, BUNDLED_SHAPE)(image)
    assert decoders == [] and image.size == (640, 480)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_with_nearly_the_same_pixels() -> None:
    data = jpeg(smooth_rgb((1920, 1080), seed=8), quality=92)
    image = open_image(data)
    drafted = Preprocessor(BUNDLED, BUNDLED_SHAPE)(image)[0].astype(np.int16)
    # 1080 / 256 = 4.2: half scale still leaves twice the resized size (DRAFT_MARGIN), a quarter would not
    assert DRAFT_MARGIN == 2 and image.size == (960, 540)
    full = Preprocessor(BUNDLED, BUNDLED_SHAPE)(decode_image(data))[0].astype(np.int16)
    assert np.abs(drafted - full).max() <= 12 and np.abs(drafted - full).mean() < 1.0


@pytest.mark.parametrize(("size", "decoded"), [((800, 600), (800, 600)), ((4000, 3000), (1000, 750))])
def test_only_a_jpeg_at_least_twice_the_margin_is_decoded_smaller(
    size: tuple[int, int], decoded: tuple[int, int]
) -> None:
    image = open_image(jpeg(solid((90, 120, 150), size)))
    tensor = Preprocessor(BUNDLED, BUNDLED_SHAPE)(image)
    assert image.size == decoded
    assert np.abs(tensor[0].astype(np.int16) - [90, 120, 150]).max() <= 2


def test_a_rotated_large_jpeg_is_drafted_and_turned_upright() -> None:
    upright = Image.new("RGB", (1080, 1920), (0, 0, 0))
    upright.paste((255, 255, 255), (0, 0, 1080, 960))  # top half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter: the viewer rotates it 90 degrees clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    image = open_image(jpeg(stored, exif=exif, quality=95))
    assert image.size == (1920, 1080)
    tensor = Preprocessor(BUNDLED, BUNDLED_SHAPE)(image)
    assert image.size == (960, 540)  # decoded at half scale, then turned
    column = tensor[0, :, 112, 0].astype(np.int16)
    assert column[:100].min() > 240 and column[-100:].max() < 15  # white above, black below
    reference = full_resize_then_crop(
        ImageOps.exif_transpose(decode_image(jpeg(stored, exif=exif, quality=95))), BUNDLED
    )
    assert np.abs(tensor[0].astype(np.int16) - reference).mean() < 1.0


def test_a_truncated_not_yet_loaded_jpeg_fails_with_frame_error_when_preprocessed() -> None:
    data = jpeg(Image.effect_noise((640, 480), 50).convert("RGB"), quality=90)
    image = open_image(data[: len(data) // 2])  # the header is whole: opening works
    with pytest.raises(FrameError, match=r"cannot be decoded.*truncated"):
        Preprocessor(BUNDLED, BUNDLED_SHAPE)(image)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_corruption_of_an_image_file_gives_a_tensor_or_frame_error(data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"]))
    buffer = io.BytesIO()
    smooth_rgb((96, 64), seed=9).save(buffer, fmt)
    raw = bytearray(buffer.getvalue())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(1, len(raw)))]
    with warnings.catch_warnings():
        # Pillow warns about corrupt metadata it reads past (e.g. TIFF EXIF); only errors matter here
        warnings.simplefilter("ignore")
        try:
            image = open_image(bytes(raw), max_pixels=4096 * 4096)  # the source's pixel-count check
            tensor = Preprocessor(BUNDLED, BUNDLED_SHAPE)(image)
        except FrameError:
            return
    assert tensor.shape == BUNDLED_SHAPE and tensor.dtype == np.uint8


def test_bytes_in_memory_go_to_the_decoder_in_one_piece_with_the_same_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pillow hands a decoder 64 KiB pieces by default, joining each unread rest to the next one."""
    big = Image.effect_noise((900, 700), 60).convert("RGB")
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    assert len(data) > 3 * 65536
    calls: list[int] = []
    image = open_bytes(data)
    decoder = Image._getdecoder

    def counting(*args: Any) -> Any:
        real = decoder(*args)

        class Counted:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def decode(self, piece: bytes) -> Any:
                calls.append(len(piece))
                return real.decode(piece)

        return Counted()

    monkeypatch.setattr(Image, "_getdecoder", counting)
    image.load()
    monkeypatch.undo()
    assert calls == [len(data)]
    with Image.open(io.BytesIO(data)) as default:
        assert np.array_equal(np.asarray(image), np.asarray(default))
