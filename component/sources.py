"""Frame sources behind one interface, in a registry keyed by name.

A source hands out frames one at a time: `next_frame()` returns a Frame, None when the source is
exhausted, or raises FrameError for one unusable frame (the source has already moved past it, so the
caller logs, counts, and asks again). Sources here: `folder` (every image in a folder, in name order,
re-scanned on each pass so new files are picked up) and `image` (one file, read again on each pass); video
files, streams and cameras are in video.py.

An image is opened, not decoded: its header is read and its pixel count checked against `max_pixels`
(bounding the work one frame may cost), and preprocessing decodes it, at the size it needs (JPEG DCT
scaling). A file that cannot be read at all is a FrameError; the file system's own failures (a name too
long, a folder that went away) are too, never an exception the loop does not expect.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from PIL import Image, UnidentifiedImageError

from agent_client.errors import FrameError, SourceError

from .frames import Frame
from .preprocess import open_bytes
from .video import STREAM_SCHEMES, VideoSource, video_target

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MAX_FILE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000


class FrameSource(Protocol):
    name: str

    def next_frame(self) -> Frame | None: ...

    def counts(self) -> Mapping[str, int]:
        """The source's own counters for the status message."""
        ...

    def close(self) -> None: ...


def open_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An image opened from its bytes, header read, pixels not yet decoded; FrameError for data that is not
    an image Pillow reads, or one with more than max_pixels pixels."""
    try:
        image = open_bytes(data)
    except UnidentifiedImageError:
        raise FrameError(f"{name} is not an image Pillow can read (corrupt or unsupported format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FrameError(f"{name} cannot be opened: {exc}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise FrameError(f"{name} is empty ({width}x{height})")
    if width * height > max_pixels:
        raise FrameError(
            f"{name} is {width}x{height} = {width * height} pixels, more than MaxFramePixels "
            f"({max_pixels}); skipped"
        )
    return image


def _read(path: Path) -> bytes:
    try:
        with path.open("rb", buffering=0) as handle:
            # read in pieces of the file's own size (+1), not in one read of the limit, which maps that
            # much memory first (measured: 190 us a frame against 28 us); to the end of the file, so a
            # file that grew since (or a size a network file system had cached) is still read whole
            size = min(os.fstat(handle.fileno()).st_size, MAX_FILE_BYTES) + 1
            pieces, length = [], 0
            while length <= MAX_FILE_BYTES and (piece := handle.read(min(size, MAX_FILE_BYTES + 1 - length))):
                pieces.append(piece)
                length += len(piece)
                size = max(size * 2, 1 << 16)  # a size far too small (0) grows, not one byte per read
            data = b"".join(pieces)  # one piece: that very object, not a copy
    except FileNotFoundError:
        raise FrameError(f"{path} does not exist (any more)") from None
    except OSError as exc:
        raise FrameError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise FrameError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB; skipped")
    return data


class _FileSequence:
    """Shared by the folder and image sources: reads a list of files, pass after pass."""

    def __init__(
        self, name: str, describe: str, list_files: Callable[[], list[Path]], loop: bool, max_pixels: int
    ) -> None:
        self.name = name
        self._describe = describe
        self._list_files = list_files
        self._loop = loop
        self._max_pixels = max_pixels
        self._pending: list[Path] = []
        self._passes = 0
        self._frame_id = 0

    def next_frame(self) -> Frame | None:
        if not self._pending:
            if self._passes and not self._loop:
                return None
            self._pending = self._list_files()
            self._passes += 1
            if not self._pending:
                raise FrameError(
                    f"{self._describe} has no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        path = self._pending.pop(0)
        self._frame_id += 1
        started = time.perf_counter()
        try:
            data = _read(path)
            image = open_image(data, str(path), self._max_pixels)
        except FrameError as exc:
            raise FrameError(f"frame {self._frame_id} ({path}): {exc}") from exc
        read_ms = (time.perf_counter() - started) * 1000
        return Frame(
            frame_id=self._frame_id,
            timestamp=time.time(),
            source=str(path),
            image=image,
            read_ms=read_ms,
            encoded=data,
        )

    def counts(self) -> Mapping[str, int]:
        return {"source_passes": self._passes}

    def close(self) -> None:
        self._pending = []


def _listing(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise FrameError(f"image folder {path} cannot be listed: {exc.strerror or exc}") from exc


def image_source_problem(path: Path) -> str | None:
    """Why path cannot serve as a folder or image source, or None when it can."""
    try:
        if path.is_dir():
            return None if _listing(path) else f"image folder {path} holds no images"
        if path.is_file():
            return None
    except (OSError, FrameError) as exc:
        return f"{path} cannot be used as an image source: {exc}"
    return f"{path} does not exist; set ImageDirectory (and ImageName) to an existing folder (or image)"


def folder_source(path: Path, loop: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    problem = image_source_problem(path)
    if problem:
        raise SourceError(f"{problem}; set ImageDirectory to a folder of images")
    return _FileSequence("folder", f"image folder {path}", lambda: _listing(path), loop, max_pixels)


def image_source(path: Path, loop: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    problem = image_source_problem(path)
    if problem:
        raise SourceError(f"image {path}: {problem}; check ImageDirectory and ImageName")
    return _FileSequence("image", f"image {path}", lambda: [path], loop, max_pixels)


SOURCES: dict[str, Callable[[Path, bool, int], FrameSource]] = {
    "folder": folder_source,
    "image": image_source,
}
DEVICE_PREFIXES = ("/dev/video", "/dev/v4l/")


def source_problem(spec: str) -> str | None:
    """Why a Source value cannot be parsed, or None (whether it can be opened is found out when it is)."""
    if "\x00" in spec or len(os.fsencode(spec)) > 4095:
        return "must be at most 4095 bytes without NUL characters"
    scheme, sep, _ = spec.partition("://")
    if sep and spec.startswith(STREAM_SCHEMES):
        try:
            url = urllib.parse.urlsplit(spec)
            port = url.port
        except ValueError as exc:
            return f"is not a valid URL: {exc}"
        if not url.hostname:
            return "a stream URL needs a host, e.g. rtsp://camera.local:554/stream"
        return None if port is None or 0 < port < 65536 else "has an invalid port"
    if sep and scheme == "v4l2":
        spec = spec.removeprefix("v4l2://")
        if not spec.startswith(DEVICE_PREFIXES):
            return "v4l2:// takes a device path such as v4l2:///dev/video0"
        return None
    if sep and scheme != "file":
        schemes = ", ".join(s.removesuffix("://") for s in STREAM_SCHEMES)
        return f"has an unknown scheme {scheme!r}; use {schemes}, v4l2 or file, or a path"
    return None


def open_source(spec: Path | str, loop: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    """The source for spec: a folder, an image, a video file (`file://` or by suffix), a stream
    (`rtsp://`, `http(s)://`, ...) or a V4L2 device (`/dev/videoN`, `v4l2:///dev/videoN`)."""
    if isinstance(spec, str):
        problem = source_problem(spec)
        if problem:
            raise SourceError(f"Source: {problem}")
    video = video_target(str(spec))
    if video is not None:
        target, live = video
        return VideoSource(target, live=live, loop=loop, max_pixels=max_pixels)
    path = Path(spec)
    try:
        kind = "folder" if path.is_dir() else "image"
    except OSError as exc:
        raise SourceError(f"{path} cannot be used as a source: {exc.strerror or exc}") from exc
    logger.info("reading frames from %s (%s)", path, kind)
    return SOURCES[kind](path, loop, max_pixels)
