"""VideoSource with a stand-in for cv2: streams open through FFmpeg with bounded waits, and a read that
took the whole read timeout (a silent stream; OpenCV may still return a held-back frame) means reconnect."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from agent_client.errors import FrameTimeoutError
from component import video
from component.frames import Frame
from component.video import VideoSource


class FakeCapture:
    """Reads give pictures filled with the values in `script`, a float meaning a read that takes that long."""

    def __init__(self, script: list[int | float]) -> None:
        self.script = script

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def read(self) -> tuple[bool, Any]:
        if not self.script:
            time.sleep(0.01)
            return False, None
        step = self.script.pop(0)
        if isinstance(step, float):
            time.sleep(step)
            step = 99  # OpenCV hands out a frame its decoder held back
        return True, np.full((2, 2, 3), step, dtype=np.uint8)

    def release(self) -> None:
        pass


class FakeCv2:
    CAP_FFMPEG = 1900
    CAP_V4L2 = 200
    CAP_PROP_OPEN_TIMEOUT_MSEC = 53
    CAP_PROP_READ_TIMEOUT_MSEC = 54

    def __init__(self, *scripts: list[int | float]) -> None:
        self.scripts = list(scripts)
        self.opened: list[tuple[Any, ...]] = []

    def VideoCapture(self, *args: Any) -> FakeCapture:  # OpenCV's name
        self.opened.append(args)
        return FakeCapture(self.scripts.pop(0) if self.scripts else [])


def frames(source: VideoSource, count: int) -> list[Frame]:
    found: list[Frame] = []
    deadline = time.monotonic() + 10.0
    while len(found) < count and time.monotonic() < deadline:
        try:
            frame = source.next_frame()
        except FrameTimeoutError:
            continue
        if frame is not None:
            found.append(frame)
    return found


def test_a_stream_read_that_hits_the_read_timeout_drops_the_frame_and_reconnects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cv2 = FakeCv2([1, 2, 0.3], [3, 4])
    monkeypatch.setattr(video, "import_cv2", lambda: cv2)
    source = VideoSource(
        "rtsp://127.0.0.1:8554/cam", live=True, queue_size=10, backoff=(0.01, 0.01), read_timeout=0.2
    )
    try:
        got = frames(source, 4)
    finally:
        source.close()
    assert [int(np.asarray(f.image)[0, 0, 0]) for f in got] == [1, 2, 3, 4]
    assert source.reconnects >= 1
    assert cv2.opened[0] == ("rtsp://127.0.0.1:8554/cam", cv2.CAP_FFMPEG, [53, 10000, 54, 200])


def test_files_and_devices_open_without_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    for target, live, backend in (("/dev/video0", True, (200,)), ("/data/clip.mp4", False, ())):
        cv2 = FakeCv2([1, 0.3, 2])
        monkeypatch.setattr(video, "import_cv2", lambda cv2=cv2: cv2)
        source = VideoSource(target, live=live, loop=False, queue_size=10, read_timeout=0.2)
        try:
            got = frames(source, 3)
        finally:
            source.close()
        assert [int(np.asarray(f.image)[0, 0, 0]) for f in got] == [1, 99, 2]  # a slow read is no stall
        assert cv2.opened[0] == (target, *backend)  # a camera always through V4L2
