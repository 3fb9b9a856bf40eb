"""fakecam: a test double of a V4L2 camera, for a kernel that cannot have one.

The machine the tests run on has a kernel without media support (no CONFIG_MEDIA_SUPPORT, no modules,
no CUSE), so no /dev/video* node can exist: not a real camera, not v4l2loopback, not vivid. fakecam.c is
a small C library that, loaded with LD_PRELOAD into a process, emulates the driver of one capture device
in userspace (open of the device path gives a memfd that backs the mmap buffers; the V4L2 ioctls on it are
answered as a YUYV-only streaming camera answers them; select/poll wait for the next frame). The process's
own code, here OpenCV's V4L2 backend, runs unchanged against it. See fakecam.c for the emulated driver.

This module builds the library with gcc and writes the raw frames the emulated sensor plays.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path(__file__).resolve().parent / "fakecam.c"
WIDTH, HEIGHT = 640, 480


def build_library(folder: Path) -> Path:
    """Compiles fakecam.c into folder/fakecam.so and returns its path."""
    library = folder / "fakecam.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(library), str(SOURCE), "-ldl", "-lpthread"],
        check=True,
        timeout=120,
    )
    return library


def yuyv(image: Image.Image, size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """One frame as a webcam sends it: YUYV 4:2:2, BT.601 limited range (what OpenCV's YUYV to BGR
    conversion expects), each pair of pixels sharing the mean of their chroma."""
    rgb = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    u = (u[:, 0::2] + u[:, 1::2]) / 2
    v = (v[:, 0::2] + v[:, 1::2]) / 2
    packed = np.empty((size[1], size[0] // 2, 4), dtype=np.float32)
    packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    return np.clip(np.rint(packed), 0, 255).astype(np.uint8).tobytes()


def write_frames(path: Path, images: list[Image.Image]) -> Path:
    """The raw file the emulated sensor loops over: the images as YUYV frames, back to back."""
    path.write_bytes(b"".join(yuyv(image) for image in images))
    return path


def environment(library: Path, device: str, frames: Path, fps: int = 15, **extra: str) -> dict[str, str]:
    """os.environ plus what makes a child process see the emulated camera at `device`."""
    preload = " ".join(p for p in (str(library), os.environ.get("LD_PRELOAD", "")) if p)
    return dict(
        os.environ,
        LD_PRELOAD=preload,
        FAKECAM_DEVICE=device,
        FAKECAM_FRAMES=str(frames),
        FAKECAM_WIDTH=str(WIDTH),
        FAKECAM_HEIGHT=str(HEIGHT),
        FAKECAM_FPS=str(fps),
        **extra,
    )
