"""One contender of the benchmark in its own process, driven over stdin/stdout (one JSON object a line).

    python bench/worker.py bare|inprocess|prep --model FOLDER --threads N [--spin agent|on|off]
                                                                      (PYTHONPATH = the source tree)

`bare`: ONNX Runtime alone on the package's model file, fed one frame prepared once by the tree's own
Preprocessor (the model's own input: uint8 NHWC for 2.x packages, float32 NCHW for 1.x). `inprocess`: the
way AWS's image-classification component works, all in one process: per frame, Pillow opens the file,
the whole image is resized, numpy normalises to float32 NCHW (modelprep.reference.legacy_tensor), the
runtime runs the float network (the package's model without its uint8 prologue), then softmax, top-5 and
the JSON result. Both create their session with the agent's own ONNX Runtime backend class (same threads,
graph optimisation and spinning as the agent; bench/sessions.py); --spin on|off keeps the agent's other
options and sets ONNX Runtime's intra-op spinning as given.

Commands: {"cmd": "run", "frames": n} -> per-frame milliseconds, wall and CPU seconds of this process;
{"cmd": "prep", "images": [paths], "frames": n} -> each frame's preprocessing milliseconds per image
(`prep`: the tree's preprocessing alone, no runtime);
{"cmd": "memory"}; {"cmd": "quit"}. Works against either source tree: only the tree's Preprocessor, manifest
reader and agent backend are used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import procstat
import sessions

IMAGES = Path("artifacts/images")  # of the tree the worker runs in (its working directory)


def load_manifest(folder: Path) -> Any:
    if Path("modelpkg").is_dir():
        from modelpkg.manifest import load_manifest as load
    else:  # the tree before modelpkg (1.x packages): the component's own reader
        from component.manifest import load_manifest as load  # type: ignore[no-redef]
    return load(folder)


def native_preprocess(manifest: Any) -> Callable[[bytes], np.ndarray]:
    """JPEG bytes -> the model's input, as this tree's component does it: opened but not decoded where the
    tree's frame source works that way (component.sources.open_image), fully decoded by the source before
    (component.preprocess.decode_image), then the tree's Preprocessor."""
    from component import preprocess, sources

    prepare = preprocess.Preprocessor(manifest.preprocess, manifest.input.shape)
    if hasattr(sources, "open_image"):
        return lambda data: prepare(sources.open_image(data, "frame"))
    return lambda data: prepare(preprocess.decode_image(data))


def timed(frames: int, work: Callable[[int], object]) -> dict[str, Any]:
    times = []
    cpu0, wall0 = procstat.cpu_seconds(), time.perf_counter()
    for i in range(frames):
        started = time.perf_counter()
        work(i)
        times.append((time.perf_counter() - started) * 1000)
    wall, cpu = time.perf_counter() - wall0, procstat.cpu_seconds() - cpu0
    return {"times": times, "wall": wall, "cpu": cpu}


def spin_choice(spin: str, threads: int) -> tuple[bool | None, str]:
    """(spin argument for sessions.onnx_session, description) for --spin."""
    if spin == "agent":
        on = sessions.agent_spins(threads)
        return None, f"spinning {'on' if on else 'off'} as this tree's agent"
    return spin == "on", f"spinning {spin} (set here)"


class Bare:
    def __init__(self, folder: Path, threads: int, spin: str) -> None:
        self.manifest = load_manifest(folder)
        choice, self.spinning = spin_choice(spin, threads)
        self.spins = sessions.agent_spins(threads) if choice is None else choice
        self.session = sessions.onnx_session(self.manifest.model_path.read_bytes(), threads, choice)
        self.preprocess = native_preprocess(self.manifest)
        tensor = self.preprocess((IMAGES / "chelsea.jpg").read_bytes())
        self.feed = {self.manifest.input.name: tensor}
        self.describe = (
            f"{self.manifest.name} {self.manifest.version}, input {tensor.dtype} {list(tensor.shape)}, "
            f"{self.spinning}"
        )
        for _ in range(20):
            self.session.run(self.feed)

    def run(self, frames: int) -> dict[str, Any]:
        return timed(frames, lambda _: self.session.run(self.feed))


class Prep:
    """Preprocessing alone, in a process of its own for each round (the caller starts a new one every
    round, so that how one process happened to be laid out in memory or placed on the cores weighs on
    one round only)."""

    spins = False

    def __init__(self, folder: Path, threads: int, spin: str) -> None:
        self.manifest = load_manifest(folder)
        self.preprocess = native_preprocess(self.manifest)
        self.describe = f"preprocessing of {self.manifest.name} {self.manifest.version}"

    def prep(self, paths: list[str], frames: int) -> dict[str, Any]:
        """The ms of each frame per image file (its bytes in memory -> the model's input) of the tree's own
        preprocessing and, in a tree that has it, of the 1.x float path (modelprep.reference.legacy_tensor):
        per image, each way's frames in a row after one untimed frame, as a device prepares frame after
        frame (taking turns frame by frame left one way the caches of the other, which weighed on the
        trees that have two ways and not on those with one). The caller takes medians over rounds
        interleaved with other trees."""
        ways: dict[str, Callable[[bytes], Any]] = {"native": self.preprocess}
        if Path("modelprep/reference.py").is_file():
            from modelprep.reference import legacy_tensor

            ways["legacy"] = lambda data: legacy_tensor(data, self.manifest.preprocess)
        result: dict[str, dict[str, list[float]]] = {}
        for path in paths:
            data = Path(path).read_bytes()
            times: dict[str, list[float]] = {way: [] for way in ways}
            for way, prepare in ways.items():
                prepare(data)
                for _ in range(frames):
                    started = time.perf_counter()
                    prepare(data)
                    times[way].append((time.perf_counter() - started) * 1000)
            result[Path(path).name] = times
        return {"prep": result}


class InProcess:
    def __init__(self, folder: Path, threads: int, spin: str) -> None:
        from modelpkg.manifest import load_labels
        from modelprep.reference import float_network

        self.manifest = load_manifest(folder)
        self.labels = load_labels(self.manifest)
        choice, spinning = spin_choice(spin, threads)
        self.spins = sessions.agent_spins(threads) if choice is None else choice
        self.session = sessions.onnx_session(float_network(self.manifest.model_path), threads, choice)
        self.paths = sorted(IMAGES.glob("*.jpg"))
        self.describe = (
            f"float network of {self.manifest.name} {self.manifest.version}, input float32 NCHW, {spinning}"
        )
        self.run(20)

    def classify(self, path: Path) -> str:
        from modelprep.reference import legacy_tensor

        tensor = legacy_tensor(path, self.manifest.preprocess)
        (logits,) = self.session.run({"input": tensor})
        exp = np.exp(logits[0] - logits[0].max())
        scores = exp / exp.sum()
        top = np.argsort(scores)[::-1][:5]
        results = [{"Label": self.labels[i], "Score": float(scores[i])} for i in top if scores[i] >= 0.3]
        return json.dumps({"source": str(path), "inference-results": results})

    def run(self, frames: int) -> dict[str, Any]:
        return timed(frames, lambda i: self.classify(self.paths[i % len(self.paths)]))


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/worker.py", description=__doc__)
    parser.add_argument("kind", choices=("bare", "inprocess", "prep"))
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--spin", choices=("agent", "on", "off"), default="agent")
    args = parser.parse_args()
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    kinds: dict[str, Any] = {"bare": Bare, "inprocess": InProcess, "prep": Prep}
    worker = kinds[args.kind](args.model, args.threads, args.spin)
    print(json.dumps({"ready": worker.describe, "pid": os.getpid(), "spins": worker.spins}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        if command["cmd"] == "run":
            reply = worker.run(command["frames"])
        elif command["cmd"] == "prep" and isinstance(worker, Prep):
            reply = worker.prep(command["images"], command["frames"])
        else:
            memory = procstat.memory()
            reply = {"rss_mb": memory.rss_mb, "peak_mb": memory.peak_mb}
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
