"""Latency benchmark: bare ONNX Runtime vs. the component's per-frame pipeline through the agent.

    .venv/bin/python bench/benchmark.py [--frames 200] [--threads 2] [--batches 1,2,4,8]

Prints (1) the median/p90 latency of ONNX Runtime alone on the bundled model with one preprocessed
frame, (2) the component's per-frame latency split by stage (read+decode, preprocess, predict over gRPC on
a unix socket to a real agent subprocess, postprocess), and (3) their ratio. The agent runs as its own
process with the same thread count, as on a device; (4) with --batches, the component's throughput
(frames/s over prepare + Predict + postprocess) and Predict time per frame at each batch size.
Numbers, not assertions: this is not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from agent_client import AgentClient, ClientOptions
from component.classify import RemoteModel
from component.frames import Frame, StageLatency
from component.pipeline import FramePipeline
from component.preprocess import Preprocessor
from component.sources import FrameSource, open_source
from modelpkg.manifest import load_labels, load_manifest

ROOT = Path(__file__).resolve().parent.parent

MODEL = ROOT / "artifacts" / "models" / "efficientnet-lite0"
IMAGES = ROOT / "artifacts" / "images"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bare_onnxruntime(tensor: np.ndarray, threads: int, runs: int) -> list[float]:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL / "model.onnx"), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: tensor}
    for _ in range(20):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000)
    return times


@contextmanager
def agent_pipeline(threads: int) -> Iterator[FramePipeline]:
    """The component's pipeline on the bundled model, served by an agent subprocess."""
    manifest = load_manifest(MODEL)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    sock = workdir / "agent.sock"
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "--socket",
            str(sock),
            "--models-root",
            str(MODEL.parent),
            "--threads",
            str(threads),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        with AgentClient(sock, ClientOptions(timeout=30)) as client:
            client.wait_until_ready(30)
            model = RemoteModel(client, manifest, manifest.name)
            model.ensure_loaded()
            yield FramePipeline(
                Preprocessor(manifest.preprocess, manifest.input.shape), model, load_labels(manifest), 5, 0.3
            )
    finally:
        agent.terminate()
        agent.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def next_frame(source: FrameSource) -> Frame:
    frame = source.next_frame()
    assert frame is not None
    return frame


def per_frame_latencies(pipeline: FramePipeline, frames: int) -> list[StageLatency]:
    source = open_source(IMAGES)
    for _ in range(20):
        pipeline.classify(next_frame(source))
    return [pipeline.classify(next_frame(source)).latency for _ in range(frames)]


def batch_throughput(pipeline: FramePipeline, size: int, frames: int) -> tuple[float, float]:
    """(frames per second, median Predict ms per frame) classifying `frames` frames in batches of size."""
    source = open_source(IMAGES)
    batches = max(1, frames // size)
    pipeline.infer([pipeline.prepare(next_frame(source)) for _ in range(size)])  # warm-up
    predict: list[float] = []
    started = time.perf_counter()
    for _ in range(batches):
        results = pipeline.infer([pipeline.prepare(next_frame(source)) for _ in range(size)])
        predict.append(results[0].latency.predict / size)
    elapsed = time.perf_counter() - started
    return batches * size / elapsed, statistics.median(predict)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="", help="comma-separated batch sizes for the throughput table")
    args = parser.parse_args()
    sizes = [int(size) for size in args.batches.split(",") if size.strip()]

    manifest = load_manifest(MODEL)
    frame = open_source(IMAGES).next_frame()
    assert frame is not None
    tensor = Preprocessor(manifest.preprocess, manifest.input.shape)(frame.image)

    bare = bare_onnxruntime(tensor, args.threads, args.frames)
    with agent_pipeline(args.threads) as pipeline:
        stages = per_frame_latencies(pipeline, args.frames)
        throughput = {size: batch_throughput(pipeline, size, args.frames) for size in sizes}
    columns = {
        "read+decode": [s.read for s in stages],
        "preprocess": [s.preprocess for s in stages],
        "predict (gRPC+runtime)": [s.predict for s in stages],
        "postprocess": [s.postprocess for s in stages],
        "total per frame": [s.total for s in stages],
    }
    print(
        f"model {manifest.name} {manifest.version}, {args.threads} runtime thread(s), {args.frames} frames, "
        f"{os.cpu_count()} CPU(s)"
    )
    print(f"{'stage':<26}{'median ms':>10}{'p90 ms':>10}")
    print(f"{'bare ONNX Runtime':<26}{statistics.median(bare):>10.2f}{percentile(bare, 90):>10.2f}")
    for name, values in columns.items():
        print(f"{name:<26}{statistics.median(values):>10.2f}{percentile(values, 90):>10.2f}")
    bare_median = statistics.median(bare)
    for name in ("predict (gRPC+runtime)", "total per frame"):
        print(f"ratio {name} / bare ONNX Runtime: {statistics.median(columns[name]) / bare_median:.2f}")
    if throughput:
        print(f"{'batch size':<12}{'frames/s':>10}{'predict ms/frame':>18}")
        for size, (fps, predict_ms) in throughput.items():
            print(f"{size:<12}{fps:>10.1f}{predict_ms:>18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
