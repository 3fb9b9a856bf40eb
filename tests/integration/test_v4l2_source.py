"""A camera (/dev/videoN) through OpenCV's V4L2 backend, against an emulated V4L2 device.

The kernel of this machine has no V4L2 support (no CONFIG_MEDIA_SUPPORT, no loadable modules, no CUSE),
so a real camera cannot be attached and no /dev/video* node can exist, not even v4l2loopback or vivid.
These tests therefore emulate one camera in userspace: tests/v4l2_emulator/fakecam.c, a test double of a
YUYV webcam's driver, is loaded with LD_PRELOAD into the process under test (only that process: the agent
runs without it), and answers the open of /dev/video42 and the V4L2 ioctls on that fd.

Real: OpenCV's V4L2 backend code path (format negotiation, REQBUFS, mmap of the buffers from the device
fd, QBUF/DQBUF streaming, select() for the next frame, the YUYV to BGR conversion), the component and its
VideoSource (reconnects, drop-oldest queue), and the agent with the bundled model, as subprocesses.
Emulated: the kernel driver and the sensor (its frames are chelsea.jpg, a cat, at 5 or 15 fps).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ..helpers import IMAGES_DIR, MODEL_DIR, ROOT, agent_process, stdout_payloads
from ..v4l2_emulator import HEIGHT, WIDTH, build_library, environment, write_frames

pytestmark = pytest.mark.integration

CAMERA = "/dev/video42"
CAT_LABELS = {"tiger cat", "Egyptian cat", "tabby"}


@pytest.fixture(scope="module")
def fakecam(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the emulator library, the raw YUYV frames it plays: chelsea.jpg at 640x480)."""
    folder = tmp_path_factory.mktemp("fakecam")
    with Image.open(IMAGES_DIR / "chelsea.jpg") as cat:
        frames = write_frames(folder / "frames.yuyv", [cat])
    return build_library(folder), frames


def run(command: list[str], env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Runs a Python subprocess to its end; one still running after `timeout` prints its threads' stacks
    (SIGUSR1, faulthandler) and is killed, and the test fails with its output."""
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=dict(env, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        try:
            out, err = proc.communicate(timeout=2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10.0)
        pytest.fail(f"{command[:4]} did not end within {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def test_the_component_classifies_the_emulated_camera(
    fakecam: tuple[Path, Path], socket_path: Path, tmp_path: Path
) -> None:
    library, frames = fakecam
    log = tmp_path / "fakecam.log"
    with agent_process(socket_path, MODEL_DIR.parent):
        result = run(
            [
                sys.executable,
                "-m",
                "component",
                "--source",
                CAMERA,
                "--publisher",
                "stdout",
                "--interval",
                "0",
                "--max-frames",
                "6",
                "--agent-socket",
                str(socket_path),
                "--status-interval",
                "0",
            ],
            # 5 fps: a Predict slower than two frame periods on a loaded machine would drop a frame
            environment(library, CAMERA, frames, fps=5, FAKECAM_LOG=str(log)),
        )
    assert result.returncode == 0, result.stderr
    results = stdout_payloads(result.stdout)
    assert [r["frame-id"] for r in results] == [1, 2, 3, 4, 5, 6], result.stderr
    assert all(r["inference-results"][0]["Label"] in CAT_LABELS for r in results), results
    assert f"reading frames from {CAMERA}" in result.stderr
    # the frames came through OpenCV's streaming path: mmap buffers queued, streamed, dequeued
    # and select() waited for each one (the emulator logs what the fd was asked)
    emulator = log.read_text().splitlines()
    calls = [line.split()[2] for line in emulator if line.startswith("fd ")]
    for ioctl in ("VIDIOC_QUERYCAP", "VIDIOC_S_FMT", "VIDIOC_REQBUFS", "VIDIOC_QUERYBUF", "VIDIOC_STREAMON"):
        assert ioctl in calls
    assert sum(" VIDIOC_DQBUF index=" in line for line in emulator) >= 6
    assert any(line.startswith("select on fd ") and line.endswith("readable") for line in emulator)


# A VideoSource in a subprocess that has the emulator preloaded; prints its frames and counters as JSON.
READER = textwrap.dedent(
    """
    import faulthandler, json, logging, signal, sys, time
    import numpy as np
    from agent_client.errors import FrameTimeoutError
    from component.sources import open_source
    from component.video import VideoSource

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    count, pause = int(sys.argv[1]), float(sys.argv[2])
    source = open_source(sys.argv[3]) if pause == 0 else VideoSource(sys.argv[3], live=True, queue_size=2)
    frames = []
    deadline = time.monotonic() + 60
    try:
        while len(frames) < count and time.monotonic() < deadline:
            try:
                frame = source.next_frame()
            except FrameTimeoutError:
                continue
            if frame is None:
                break
            frames.append(frame)
            if pause and len(frames) == 1:
                time.sleep(pause)  # a slow consumer: the capture thread goes on reading meanwhile
    finally:
        source.close()
    if frames:
        np.save(sys.argv[4], np.asarray(frames[-1].image))
    print(json.dumps({
        "ids": [f.frame_id for f in frames],
        "sizes": sorted({f.image.size for f in frames}),
        "reconnects": source.reconnects,
        "dropped": source.dropped,
        "live": source.live,
    }))
    """
)


def read_camera(
    fakecam: tuple[Path, Path], folder: Path, count: int, pause: float = 0.0, **extra: str
) -> tuple[dict[str, Any], str]:
    """Reads `count` frames of the emulated camera in a subprocess (`pause` > 0: waits that long after the
    first); returns the report (the last picture is in report["picture"]) and the subprocess's log."""
    library, frames = fakecam
    picture = folder / "last-frame.npy"
    result = run(
        [sys.executable, "-c", READER, str(count), str(pause), CAMERA, str(picture)],
        environment(library, CAMERA, frames, fps=15, **extra),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    report["picture"] = np.load(picture) if picture.exists() else None
    return report, result.stderr


def test_the_picture_is_the_cat_after_the_yuyv_conversion(fakecam: tuple[Path, Path], tmp_path: Path) -> None:
    report, log = read_camera(fakecam, tmp_path, 3)
    ids = report["ids"]
    assert len(ids) == 3 and ids == sorted(set(ids)) and report["live"] and report["reconnects"] == 0, log
    assert report["sizes"] == [[WIDTH, HEIGHT]]
    expected = Image.open(IMAGES_DIR / "chelsea.jpg").convert("RGB").resize((WIDTH, HEIGHT))
    difference = np.abs(report["picture"].astype(np.int16) - np.asarray(expected, dtype=np.int16)).mean()
    assert difference < 3  # YUYV halves the chroma; the rest is rounding


def test_an_unplugged_camera_is_reopened_when_it_is_back(fakecam: tuple[Path, Path], tmp_path: Path) -> None:
    """The emulated camera is pulled out after 5 frames (DQBUF fails with ENODEV, as a driver's does) and
    its node is gone for 1 s (open fails with ENOENT); the source reopens it and frames go on."""
    log = tmp_path / "fakecam.log"
    report, stderr = read_camera(
        fakecam, tmp_path, 12, FAKECAM_DISCONNECT_AFTER="5", FAKECAM_REPLUG_MS="1000", FAKECAM_LOG=str(log)
    )
    ids = report["ids"]
    assert len(ids) == 12 and ids == sorted(set(ids)), stderr  # 5 before the unplug, at least 7 after
    assert report["reconnects"] >= 1
    assert f"stream {CAMERA} ended; reconnecting" in stderr
    assert f"cannot open {CAMERA} (no such device: is the camera plugged in?" in stderr
    assert stderr.count(f"reading frames from {CAMERA}") >= 2
    emulator = log.read_text()
    assert "VIDIOC_DQBUF -> ENODEV" in emulator and "ENOENT (unplugged)" in emulator


def test_a_slow_reader_of_the_camera_gets_the_newest_frames(
    fakecam: tuple[Path, Path], tmp_path: Path
) -> None:
    """Nothing reads for 2 s while the camera sends 15 frames a second: the source's queue of 2 keeps the
    newest, drops the oldest and counts them."""
    report, stderr = read_camera(fakecam, tmp_path, 3, pause=2.0)
    ids = report["ids"]
    assert len(ids) == 3, stderr
    assert report["dropped"] >= 5, report["dropped"]
    assert ids[1] >= 10 and ids[2] > ids[1], ids  # the frames after the pause are recent ones
