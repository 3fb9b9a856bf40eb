"""Video sources through OpenCV (the `camera` extra): a video file, an RTSP/HTTP stream, a V4L2 device.

A capture thread reads frames into a small queue. Live sources (streams, devices) never wait for the
consumer: when the queue is full the oldest frame is dropped and counted, so classification always sees
the newest picture. A video file is not live, so its reader waits for room instead and loses nothing.
When a stream ends or fails, the thread reconnects with capped exponential backoff; a file is read
again from the start when looping, otherwise the source ends. A stream is opened through FFmpeg with
bounded waits: a connection that stays open but goes silent counts as failed once a read has waited
`read_timeout`. (OpenCV's own limit is 30 s a read, and a read that times out can still hand out a
frame its decoder held back, so a silent RTSP camera went unnoticed for a minute or more.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

from PIL import Image

from agent_client.errors import FrameTimeoutError, SourceError

from .frames import Frame

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts", ".mjpeg"})


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise SourceError(
            "video, stream and camera sources need OpenCV: pip install 'gg-edge-classifier[camera]' "
            "(opencv-python-headless)"
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
    ) -> None:
        self.name = "stream" if live else "video"
        self.target = target
        self.live = live
        self.loop = loop
        self.wait = wait
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self._stream = target.startswith(STREAM_SCHEMES)
        self._device = target.startswith("/dev/video")
        self.dropped = 0
        self.reconnects = 0
        if target.startswith(("rtsp://", "rtsps://")):
            # RTSP over TCP: no lost packets turning into smeared frames (set the variable to override)
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        self._cv2 = import_cv2()
        self._backoff = backoff
        self._frames: deque[Frame] = deque()
        self._size = queue_size
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._frame_id = 0
        self._thread = threading.Thread(target=self._capture, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

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
        raise FrameTimeoutError(f"no frame from {self.target} within {self.wait:g} s (reconnecting?)")

    def close(self) -> None:
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        self._thread.join(5.0)

    def _capture(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            capture = self._open()
            if not capture.isOpened():
                capture.release()
                logger.warning("cannot open %s%s; trying again in %.1f s", self.target, self._hint(), delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            logger.info("reading frames from %s", self.target)
            self._read_all(capture)
            capture.release()
            if self._stop.is_set():
                break
            if not self.live:
                if self.loop:
                    continue
                break
            self.reconnects += 1
            logger.warning("stream %s ended; reconnecting in %.1f s", self.target, delay)
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

    def _read_all(self, capture: Any) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            ok, bgr = capture.read()
            if not ok or bgr is None:
                return
            if self._stream and time.perf_counter() - started >= self.read_timeout:
                logger.warning(
                    "no frame from %s within %.1f s: the stream stalled", self.target, self.read_timeout
                )
                return
            image = Image.fromarray(bgr[:, :, ::-1])  # OpenCV decodes to BGR
            self._frame_id += 1
            frame = Frame(
                self._frame_id, time.time(), self.target, image, (time.perf_counter() - started) * 1000
            )
            with self._ready:
                if not self.live:
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
    if spec.startswith("/dev/video"):
        return spec, True
    path = spec.removeprefix("file://")
    if any(path.lower().endswith(suffix) for suffix in VIDEO_SUFFIXES):
        return path, False
    return None
