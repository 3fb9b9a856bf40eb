"""Video sources through OpenCV (installed with the component): a video file, an RTSP/HTTP stream, a V4L2
device.

A capture thread reads frames into a small queue, under a named backpressure policy: live sources (streams,
devices) use DROP_OLDEST (the reader never waits; when the queue is full the oldest frame is dropped and
counted, so classification always sees the newest picture); a video file uses WAIT (its reader waits for
room and loses nothing). When a stream ends or fails, the thread reconnects with capped exponential
backoff; a file is read again from the start when looping, otherwise the source ends. A file (or stream)
that opens but yields no frame backs off the same way instead of spinning. A stream is opened through
FFmpeg with bounded waits: a connection that stays open but goes silent counts as failed once a read has
waited `read_timeout` (OpenCV's own limit is 30 s a read, and a read that times out can still hand out a
frame its decoder held back). Frames with more than `max_pixels` pixels are skipped and counted.

Stream URLs may carry credentials (rtsp://user:password@camera/...): the source's name in frames, logs and
status messages has them masked.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from PIL import Image

from agent_client.errors import FrameTimeoutError, SourceError

from .backoff import Backoff
from .frames import Frame
from .redact import redact

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts", ".mjpeg"})


class Backpressure(enum.Enum):
    """What the capture thread does when the consumer has not taken the queued frames yet."""

    DROP_OLDEST = "drop-oldest"  # live sources: never wait, hand out the newest picture
    WAIT = "wait"  # files: wait for room, lose nothing


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise SourceError(
            "video, stream and camera sources need OpenCV (opencv-python-headless, in the component's "
            "requirements.txt; elsewhere pip install 'gg-edge-classifier[camera]')"
        ) from exc
    return cv2


class VideoSource:
    """Frames from cv2.VideoCapture(target) on a thread; see the module docstring for the policies."""

    def __init__(
        self,
        target: str,
        *,
        live: bool,
        loop: bool = True,
        queue_size: int = 2,
        wait: float = 1.0,
        backoff: tuple[float, float] = (0.5, 10.0),
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        max_pixels: int = 40_000_000,
    ) -> None:
        self.name = "stream" if live else "video"
        self.target = target
        self.public_name = redact(target)
        self.live = live
        self.loop = loop
        self.policy = Backpressure.DROP_OLDEST if live else Backpressure.WAIT
        self.wait = wait
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.max_pixels = max_pixels
        self._stream = target.startswith(STREAM_SCHEMES)
        self._device = target.startswith("/dev/")
        self.dropped = 0
        self.reconnects = 0
        self.empty_opens = 0
        self.oversized = 0
        if target.startswith(("rtsp://", "rtsps://")):
            # RTSP over TCP: no lost packets turning into smeared frames (set the variable to override)
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        self._cv2 = import_cv2()
        self._backoff = Backoff(*backoff)
        self._frames: deque[Frame] = deque()
        self._size = queue_size
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._frame_id = 0
        self._first = threading.Event()
        self.thread = threading.Thread(target=self._capture, name=f"capture-{self.name}", daemon=True)
        logger.info("reading frames from %s (%s)", self.public_name, "live" if live else "video file")
        self.thread.start()

    def next_frame(self) -> Frame | None:
        """The oldest queued frame; None once a non-looping file has ended; FrameTimeoutError after `wait`."""
        with self._ready:
            self._ready.wait_for(lambda: self._frames or self._ended, timeout=self.wait)
            if self._frames:
                frame = self._frames.popleft()
                self._ready.notify_all()
                return frame
            if self._ended:
                return None
        raise FrameTimeoutError(f"no frame from {self.public_name} within {self.wait:g} s (reconnecting?)")

    def wait_ready(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Whether a first frame arrived within timeout (a new live source proves itself before it replaces
        a working one)."""
        deadline = time.monotonic() + timeout
        while not self._first.wait(0.1):
            if (
                time.monotonic() >= deadline
                or (stop is not None and stop.is_set())
                or not self.thread.is_alive()
            ):
                return False
        return True

    def counts(self) -> Mapping[str, int]:
        return {
            "dropped_frames": self.dropped,
            "source_reconnects": self.reconnects,
            "source_empty_opens": self.empty_opens,
            "oversized_frames": self.oversized,
        }

    def close(self) -> None:
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        self.thread.join(5.0)

    def _capture(self) -> None:
        while not self._stop.is_set():
            capture = self._open()
            if not capture.isOpened():
                capture.release()
                delay = self._backoff.next()
                logger.warning(
                    "cannot open %s%s; trying again in %.1f s", self.public_name, self._hint(), delay
                )
                self._stop.wait(delay)
                continue
            logger.info("reading frames from %s", self.public_name)
            got = self._read_all(capture)
            capture.release()
            if self._stop.is_set():
                break
            if got:
                self._backoff.reset()
            else:
                self.empty_opens += 1
            if not self.live and not self.loop:
                break
            delay = self._backoff.next() if not got or self.live else 0.0
            if self.live:
                self.reconnects += 1
                logger.warning("stream %s ended; reconnecting in %.1f s", self.public_name, delay)
            elif not got:
                logger.warning("%s opened but gave no frame; trying again in %.1f s", self.public_name, delay)
            self._stop.wait(delay)
        with self._ready:
            self._ended = True
            self._ready.notify_all()

    def _open(self) -> Any:
        cv2 = self._cv2
        if self._device:  # a camera through Video4Linux2, never probed as a file by FFmpeg
            return cv2.VideoCapture(self.target, cv2.CAP_V4L2)
        if not self._stream:  # a file, through the backend OpenCV picks
            return cv2.VideoCapture(self.target)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            round(self.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            round(self.read_timeout * 1000),
        ]
        return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)

    def _hint(self) -> str:
        """Why a camera may not open, in words a person can act on."""
        if not self._device:
            return ""
        if not os.path.exists(self.target):
            return " (no such device: is the camera plugged in? `v4l2-ctl --list-devices` lists them)"
        if not os.access(self.target, os.R_OK | os.W_OK):
            return " (permission denied: add the component's user to the 'video' group)"
        return " (the device refused: another process may hold it, or it is not a capture device)"

    def _read_all(self, capture: Any) -> int:
        """Reads until the capture ends or fails; the number of frames it gave."""
        got = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            ok, bgr = capture.read()
            if not ok or bgr is None:
                return got
            if self._stream and time.perf_counter() - started >= self.read_timeout:
                logger.warning(
                    "no frame from %s within %.1f s: the stream stalled", self.public_name, self.read_timeout
                )
                return got
            got += 1
            height, width = bgr.shape[:2]
            if height * width > self.max_pixels:
                self.oversized += 1
                if self.oversized == 1 or self.oversized % 1000 == 0:
                    logger.warning(
                        "%s gives %dx%d frames, more than MaxFramePixels (%d): skipped (%d so far)",
                        self.public_name,
                        width,
                        height,
                        self.max_pixels,
                        self.oversized,
                    )
                continue
            image = Image.fromarray(bgr[:, :, ::-1])  # OpenCV decodes to BGR
            self._frame_id += 1
            frame = Frame(
                self._frame_id, time.time(), self.public_name, image, (time.perf_counter() - started) * 1000
            )
            self._enqueue(frame)
            self._first.set()
        return got

    def _enqueue(self, frame: Frame) -> None:
        with self._ready:
            if self.policy is Backpressure.WAIT:
                self._ready.wait_for(lambda: len(self._frames) < self._size or self._stop.is_set())
            elif len(self._frames) >= self._size:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._ready.notify_all()


def video_target(spec: str) -> tuple[str, bool] | None:
    """(OpenCV target, live) for a video spec, or None when spec is a folder or image path."""
    if spec.startswith(STREAM_SCHEMES):
        return spec, True
    if spec.startswith("v4l2://"):
        return spec.removeprefix("v4l2://"), True
    if spec.startswith(("/dev/video", "/dev/v4l/")):
        return spec, True
    path = spec.removeprefix("file://")
    if any(path.lower().endswith(suffix) for suffix in VIDEO_SUFFIXES):
        return path, False
    return None
