from __future__ import annotations

import time

from component.frames import StageLatency
from component.metrics import Metrics


def test_percentiles_per_stage_over_the_window() -> None:
    metrics = Metrics(window=100)
    for ms in range(1, 101):
        metrics.frame_classified(StageLatency(read=ms, preprocess=0, predict=2 * ms, postprocess=0))
    table = metrics.latency_percentiles()
    assert table["read"] == {"p50": 50.5, "p90": 90.1, "p99": 99.01}
    assert table["predict"]["p50"] == 101.0 and table["total"]["p99"] == 297.03


def test_the_window_forgets_old_frames() -> None:
    metrics = Metrics(window=3)
    for ms in (1000, 1, 1, 1):
        metrics.frame_classified(StageLatency(ms, 0, 0, 0))
    assert metrics.latency_percentiles()["read"]["p99"] == 1.0


def test_fps_is_frames_over_elapsed_time() -> None:
    metrics = Metrics()
    assert metrics.fps() == 0.0
    for _ in range(5):
        metrics.frame_classified(StageLatency(0, 0, 0, 0))
        time.sleep(0.02)
    assert 20 < metrics.fps() < 60


def test_process_cpu_and_memory_are_measured() -> None:
    metrics = Metrics()
    sum(i * i for i in range(200_000))  # some CPU to measure
    process = metrics.process()
    assert process["rss-mb"] > 10 and process["cpu-percent"] > 0
