"""Video sources through OpenCV: a generated clip of a bundled image, and a live stream ffmpeg serves
on 127.0.0.1 that is killed and restarted mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.server import AgentOptions, AgentServer
from agent_client.errors import FrameTimeoutError
from component.app import InferenceApp
from component.config import build_config
from component.frames import Frame
from component.sources import FrameSource, open_source
from component.video import VideoSource

from ..helpers import IMAGES_DIR, MODEL_DIR
from ..mqtt_broker import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds at 10 fps of chelsea.jpg (a cat), MPEG-4."""
    path = tmp_path_factory.mktemp("video") / "chelsea.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-loop",
            "1",
            "-i",
            str(IMAGES_DIR / "chelsea.jpg"),
            "-t",
            "2",
            "-r",
            "10",
            "-c:v",
            "mpeg4",
            "-q:v",
            "2",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


def frames_until(source: FrameSource, count: int, timeout: float = 30.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline:
        try:
            frame = source.next_frame()
        except FrameTimeoutError:
            continue
        if frame is None:
            break
        frames.append(frame)
    return frames


def test_a_video_file_gives_every_frame_in_order_then_ends(clip: Path) -> None:
    source = open_source(str(clip), loop=False)
    try:
        frames = frames_until(source, 100)
    finally:
        source.close()
    assert [f.frame_id for f in frames] == list(range(1, 21))
    assert frames[0].image.mode == "RGB" and frames[0].image.size == (451, 300)
    assert isinstance(source, VideoSource) and source.dropped == 0


def test_a_looping_video_file_starts_again(clip: Path) -> None:
    source = open_source(f"file://{clip}", loop=True)
    try:
        frames = frames_until(source, 30)
    finally:
        source.close()
    assert [f.frame_id for f in frames] == list(range(1, 31))


def test_the_component_classifies_a_video_of_the_cat(
    clip: Path, socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = AgentServer(AgentOptions(socket=socket_path, models_root=MODEL_DIR.parent))
    server.start()
    config = {
        "agent_socket": socket_path,
        "source": str(clip),
        "inference_interval": 0.0,
        "publisher": "stdout",
        "status_interval": 0.0,
        "max_frames": 8,
    }
    app = InferenceApp(build_config(config), threading.Event())
    try:
        app.start()
    finally:
        app.close()
        server.stop(grace=1.0)
    results = [json.loads(line)["payload"] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(results) == 8
    assert all(r["inference-results"][0]["Label"] in {"tiger cat", "Egyptian cat", "tabby"} for r in results)


class StreamServer:
    """ffmpeg serving the clip, looped and re-encoded live (headers repeated), as an MPEG-TS stream over
    HTTP on 127.0.0.1. ffmpeg cannot serve RTSP to clients by itself; the live-source path (capture thread,
    drop-oldest, reconnect) is the same for every stream URL."""

    def __init__(self, clip: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}/cam.ts"
        self.clip = clip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                str(self.clip),
                "-c:v",
                "mpeg4",
                "-q:v",
                "3",
                "-g",
                "5",
                "-bsf:v",
                "dump_extra",
                "-f",
                "mpegts",
                "-listen",
                "1",
                self.url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def stream(clip: Path) -> Iterator[StreamServer]:
    server = StreamServer(clip)
    server.start()
    yield server
    server.stop()


def test_a_live_stream_is_read_and_reconnects_after_the_server_restarts(stream: StreamServer) -> None:
    source = open_source(stream.url)
    assert isinstance(source, VideoSource) and source.live
    try:
        before = frames_until(source, 5)
        assert len(before) == 5
        stream.stop()
        time.sleep(1.0)
        stream.start()
        after = frames_until(source, 5, timeout=60)
    finally:
        source.close()
    assert len(after) == 5 and source.reconnects >= 1
    assert after[0].frame_id > before[-1].frame_id
    assert after[0].image.size == (451, 300)


def test_a_live_source_drops_the_oldest_frames_when_nobody_reads(stream: StreamServer) -> None:
    source = VideoSource(stream.url, live=True, queue_size=2)
    try:
        assert len(frames_until(source, 1)) == 1
        time.sleep(2.0)  # about 20 frames arrive at 10 fps while nothing is read
        newest = frames_until(source, 2)
    finally:
        source.close()
    assert source.dropped >= 10
    assert newest[1].frame_id - newest[0].frame_id == 1 and newest[0].frame_id >= 12
