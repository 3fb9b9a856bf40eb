"""Test video: a clip made from a bundled image, and ffmpeg streaming it live (looped, re-encoded) to the
test RTSP relay (tests/rtsp_server.py) on 127.0.0.1, as a camera would."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from .helpers import IMAGES_DIR
from .rtsp_server import RtspRelay


def make_clip(path: Path, image: str = "chelsea.jpg") -> Path:
    """Two seconds at 10 fps of a bundled image, MPEG-4, written to path."""
    subprocess.run(
        [
            *("ffmpeg", "-loglevel", "error", "-loop", "1", "-i", str(IMAGES_DIR / image)),
            *("-t", "2", "-r", "10", "-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p", str(path)),
        ],
        check=True,
        timeout=120,
    )
    return path


def live_encode(clip: Path, gop: int) -> list[str]:
    """ffmpeg reading the clip in real time, looped for ever, re-encoded as MPEG-4 with a key frame every
    `gop` frames: the start of a live stream's command line, before its output options."""
    source = ["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip)]
    return [*source, "-c:v", "mpeg4", "-q:v", "3", "-g", str(gop)]


class RtspPublisher:
    """ffmpeg publishing the clip, looped and re-encoded live (a key frame every `gop` frames), to an RTSP
    relay over TCP: OPTIONS, ANNOUNCE, SETUP, RECORD, then RTP interleaved on that connection."""

    def __init__(self, clip: Path, relay: RtspRelay, path: str = "cam", gop: int = 5) -> None:
        self.clip = clip
        self.gop = gop
        self.relay = relay
        self.path = path
        self.url = relay.url(path)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts ffmpeg and returns once it records on the relay."""
        self.process = subprocess.Popen(
            [*live_encode(self.clip, gop=self.gop), "-f", "rtsp", "-rtsp_transport", "tcp", self.url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not self.relay.wait_for_publisher(self.path, 30.0):
            self.stop()
            pytest.fail(f"ffmpeg did not start publishing to {self.url} within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
