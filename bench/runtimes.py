"""Runtime x precision x threads table for the model packages: median latency, peak RSS, artifact size.

    .venv/bin/python bench/runtimes.py [--runs 100] [--threads 1 2] [--rounds 3] [--markdown]

Cells are interleaved: each round runs every cell once, in a rotating order, and the table gives each
cell's median over the rounds. A cell runs in a fresh process (so that peak RSS is that runtime's alone)
which loads the package through the agent's own backend registry (agent.backends.detect: ONNX Runtime
or DLR, as the agent would pick), checks top-1 against ONNX Runtime FP32 on the five bundled images, then
times `runs` predictions of one preprocessed frame after 10 warm-ups. Every package takes the same input
(uint8 NHWC pixels from the component's Preprocessor). Artifact size = the package's files without
manifest and labels. A progress line per cell goes to stderr. A package whose runtime is missing or was
compiled for another CPU is reported, not fatal. Numbers, not assertions: this is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "artifacts" / "models"
IMAGES = ROOT / "artifacts" / "images"
REFERENCE = MODELS / "efficientnet-lite0"
PACKAGES = (
    ("onnxruntime", "FP32", "efficientnet-lite0"),
    ("onnxruntime", "INT8 QDQ", "efficientnet-lite0-int8"),
    ("dlr", "FP32 (TVM)", f"efficientnet-lite0-neo-{platform.machine()}"),
)


@dataclass(frozen=True)
class Cell:
    runtime: str
    precision: str
    threads: int
    median_ms: float | None
    peak_rss_mb: float | None
    size_mb: float
    agreement: str


def package_size_mb(folder: Path) -> float:
    skip = {"manifest.json", "labels.txt"}
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name not in skip) / 1e6


def measure(folder: Path, threads: int, runs: int) -> dict[str, Any]:
    """In the worker process: load through the agent's backends, check top-1 vs FP32, time, report RSS."""
    import numpy as np
    import procstat
    import sessions

    from component.preprocess import Preprocessor, decode_image
    from modelpkg.manifest import load_manifest

    manifest = load_manifest(folder)
    preprocess = Preprocessor(manifest.preprocess, manifest.input.shape)
    frames = {p.name: preprocess(decode_image(p)) for p in sorted(IMAGES.glob("*.jpg"))}
    reference = json.loads(os.environ["BENCH_REFERENCE_TOP1"]) if "BENCH_REFERENCE_TOP1" in os.environ else {}
    session = sessions.load_package(folder, threads)
    name = manifest.input.name
    top1 = {image: int(np.argmax(session.run({name: x})[0])) for image, x in frames.items()}
    frame = frames["chelsea.jpg"]
    for _ in range(10):
        session.run({name: frame})
    times = []
    cpu, busy, wall = procstat.cpu_seconds(), procstat.machine_busy_seconds(), time.perf_counter()
    for _ in range(runs):
        started = time.perf_counter()
        session.run({name: frame})
        times.append((time.perf_counter() - started) * 1000)
    cpu, busy = procstat.cpu_seconds() - cpu, procstat.machine_busy_seconds() - busy
    foreign = max(0.0, busy - cpu) / (time.perf_counter() - wall)
    session.close()
    agree = sum(top1[image] == reference.get(image) for image in top1)
    return {
        "median_ms": statistics.median(times),
        "foreign_cores": foreign,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "top1": top1,
        "agreement": f"{agree}/{len(top1)}" if reference else "reference",
    }


def run_cell(folder: Path, threads: int, runs: int, reference: dict[str, int] | None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ORT_DISABLE_TELEMETRY="1")
    if reference is not None:
        env["BENCH_REFERENCE_TOP1"] = json.dumps(reference)
    command = [sys.executable, __file__, "--worker", str(folder), "--threads", str(threads)]
    done = subprocess.run(
        [*command, "--runs", str(runs)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def cell(spec: tuple[str, str, str, int], runs: list[dict[str, Any]]) -> Cell:
    """One table cell from a cell's rounds: median latency and peak RSS over the rounds that ran."""
    runtime, precision, name, threads = spec
    folder = MODELS / name
    size = package_size_mb(folder) if folder.is_dir() else 0.0
    good = [r for r in runs if "error" not in r]
    if not good:
        return Cell(runtime, precision, threads, None, None, size, runs[0]["error"] if runs else "not run")
    agreement = "reference" if folder == REFERENCE else good[0]["agreement"]
    return Cell(
        runtime,
        precision,
        threads,
        statistics.median(r["median_ms"] for r in good),
        statistics.median(r["peak_rss_mb"] for r in good),
        size,
        agreement,
    )


def table(cells: list[Cell], markdown: bool) -> str:
    header = ("runtime", "precision", "threads", "median ms", "peak RSS MB", "artifact MB", "top-1 vs FP32")
    rows = [
        (
            c.runtime,
            c.precision,
            str(c.threads),
            f"{c.median_ms:.2f}" if c.median_ms is not None else "-",
            f"{c.peak_rss_mb:.0f}" if c.peak_rss_mb is not None else "-",
            f"{c.size_mb:.1f}",
            c.agreement,
        )
        for c in cells
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in [header, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/runtimes.py", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; each cell's median of them"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.threads[0], args.runs)))
        return 0
    specs = [(r, p, n, t) for r, p, n in PACKAGES for t in args.threads]
    results: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(specs))}
    reference: dict[str, int] | None = None
    for round_ in range(args.rounds):
        order = list(range(len(specs)))
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for index in order:
            runtime, precision, name, threads = specs[index]
            folder = MODELS / name
            print(
                f"round {round_ + 1}/{args.rounds}, {runtime} {precision}, {threads} thread(s): {name}, "
                f"{args.runs} runs in a fresh process",
                file=sys.stderr,
                flush=True,
            )
            if not folder.is_dir():
                results[index].append({"error": f"missing {name}"})
                continue
            if reference is None and folder != REFERENCE:
                reference = run_cell(REFERENCE, threads, 1, None).get("top1")
            result = run_cell(folder, threads, args.runs, reference)
            if reference is None and "top1" in result:
                reference = result["top1"]
            results[index].append(result)
            if "median_ms" in result:
                print(f"  median {result['median_ms']:.2f} ms", file=sys.stderr, flush=True)
    cells = [cell(spec, results[i]) for i, spec in enumerate(specs)]
    foreign = [r["foreign_cores"] for runs in results.values() for r in runs if "foreign_cores" in r]
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, batch 1, 224x224, {args.runs} runs per cell, "
        f"median of {args.rounds} interleaved rounds (each cell a fresh process per round); other processes "
        f"kept {statistics.mean(foreign or [0.0]):.2f} cores busy on average while cells ran "
        f"(at most {max(foreign or [0.0]):.2f})"
    )
    print(table(cells, args.markdown))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
