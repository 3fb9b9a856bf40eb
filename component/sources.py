"""Frame sources behind one interface, in a registry keyed by name.

A source hands out frames one at a time: `next_frame()` returns a Frame, None when the source is
exhausted, or raises FrameError for one unreadable frame (the source has already moved past it, so the
caller logs, counts, and asks again). Sources here: `folder` (every image in a folder, in name order,
re-scanned on each pass so new files are picked up) and `image` (one file, read again on each pass).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from agent_client.errors import FrameError, SourceError

from .frames import Frame
from .preprocess import decode_image
from .video import VideoSource, video_target

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class FrameSource(Protocol):
    name: str

    def next_frame(self) -> Frame | None: ...

    def close(self) -> None: ...


class _FileSequence:
    """Shared by the folder and image sources: reads a list of files, pass after pass."""

    def __init__(self, name: str, describe: str, list_files: Callable[[], list[Path]], loop: bool) -> None:
        self.name = name
        self._describe = describe
        self._list_files = list_files
        self._loop = loop
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
            image = decode_image(path)
        except FrameError as exc:
            raise FrameError(f"frame {self._frame_id} ({path}): {exc}") from exc
        read_ms = (time.perf_counter() - started) * 1000
        return Frame(
            frame_id=self._frame_id, timestamp=time.time(), source=str(path), image=image, read_ms=read_ms
        )

    def close(self) -> None:
        self._pending = []


def folder_source(path: Path, loop: bool = True) -> FrameSource:
    if not path.is_dir():
        raise SourceError(f"image folder {path} does not exist; set ImageDirectory to a folder of images")

    def list_files() -> list[Path]:
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    if not list_files():
        raise SourceError(f"image folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return _FileSequence("folder", f"image folder {path}", list_files, loop)


def image_source(path: Path, loop: bool = True) -> FrameSource:
    if not path.is_file():
        raise SourceError(f"image {path} does not exist; check ImageDirectory and ImageName")
    return _FileSequence("image", f"image {path}", lambda: [path], loop)


SOURCES: dict[str, Callable[[Path, bool], FrameSource]] = {"folder": folder_source, "image": image_source}


def open_source(spec: Path | str, loop: bool = True) -> FrameSource:
    """The source for spec: a folder, an image, a video file (`file://` or by suffix), a stream
    (`rtsp://`, `http(s)://`, ...) or a V4L2 device (`/dev/videoN`, `v4l2:///dev/videoN`)."""
    video = video_target(str(spec))
    if video is not None:
        target, live = video
        logger.info("reading frames from %s (%s)", target, "live" if live else "video file")
        return VideoSource(target, live=live, loop=loop)
    path = Path(spec)
    kind = "folder" if path.is_dir() else "image"
    logger.info("reading frames from %s (%s)", path, kind)
    return SOURCES[kind](path, loop)
