from __future__ import annotations

import pytest

from component.video import video_target


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rtsp://cam.local:554/stream", ("rtsp://cam.local:554/stream", True)),
        ("http://127.0.0.1:8080/cam.ts", ("http://127.0.0.1:8080/cam.ts", True)),
        ("/dev/video0", ("/dev/video0", True)),
        ("v4l2:///dev/video2", ("/dev/video2", True)),
        ("file:///data/clip.mp4", ("/data/clip.mp4", False)),
        ("/data/CLIP.MKV", ("/data/CLIP.MKV", False)),
        ("/data/images", None),
        ("/data/images/cat.jpg", None),
    ],
)
def test_specs_map_to_opencv_targets_or_to_the_image_sources(spec: str, expected: object) -> None:
    assert video_target(spec) == expected
