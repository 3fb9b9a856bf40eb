"""Per-frame cost of the component through the agent, against the bare runtime and the in-process way.

    .venv/bin/python bench/benchmark.py [--rounds 5] [--threads 2] [--baseline /tmp/before] [--batches 1,4]

One run, contenders interleaved block by block (the order rotates each round, with a pause between blocks
so that no runtime's spinning threads overlap the next block), each in its own process:

- bare ONNX Runtime: the package's model file alone, one frame prepared once, `session.run` in a loop;
- in-process AWS-style loop: Pillow open, whole-image resize, numpy normalise, the same network in the same
  process, softmax and top-5 (bench/worker.py);
- the component through the agent: a cold-started agent process on a unix socket and `python -m component
  --interval 0` against it, as deployed (bench/e2e.py; every tree's code compiled to bytecode first, as
  the install step leaves it): first-result time, per-stage latencies from its results, FPS, CPU per frame
  of each process, resident memory.

Every runtime session is the agent's own ONNX Runtime backend class (intra-op threads = --threads, inter-op
1, all graph optimisations, the tree's agent's spinning): the same settings on every side. ms/frame is a
block's wall time over its frames, the same statistic for every contender; the table gives the median over
rounds. CPU per frame is each process's CPU time over the same window. With --baseline TREE (a checkout of
an older commit with its own packages) its bare runtime and component run in the same rounds, so "today" and
"new" are measured side by side; --compare NAME=TREE adds any other checkout the same way (e.g. this branch
merged with another). Progress goes to stderr, the table to stdout. Numbers, not assertions: this is not a
test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import procstat
from e2e import PairRun, compile_tree, run_pair
from report import Block, Results, print_report

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "worker.py"
SETTLE_S = 0.3  # ORT's spinning threads stop within ~30 ms of the last run (measured)
PREP_FRAMES = 120  # preprocessing: frames per image and tree, over all rounds (24 a round of 5)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Worker:
    """A bench/worker.py process in a source tree."""

    def __init__(self, kind: str, tree: Path, model: Path, threads: int, spin: str = "agent") -> None:
        env = dict(os.environ, PYTHONPATH=str(tree), ORT_DISABLE_TELEMETRY="1", PYTHONDONTWRITEBYTECODE="1")
        command = [sys.executable, str(WORKER), kind, "--model", str(model), "--threads", str(threads)]
        command += ["--spin", spin]
        self.process = subprocess.Popen(
            command, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = self._read()
        self.describe, self.pid, self.spins = str(ready["ready"]), int(ready["pid"]), bool(ready["spins"])

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.args!r} exited with {self.process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.ask_quit()

    def ask_quit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        self.process.stdin.close()
        self.process.wait(10)


def worker_block(worker: Worker, frames: int) -> Block:
    busy = procstat.machine_busy_seconds()
    reply = worker.ask(cmd="run", frames=frames)
    return Block(
        frames=frames,
        wall_s=reply["wall"],
        cpu_s={"process": reply["cpu"]},
        latencies=reply["times"],
        machine_busy_s=procstat.machine_busy_seconds() - busy,
    )


def pair_block(run: PairRun) -> Block:
    return Block(
        frames=run.frames,
        wall_s=run.wall_s,
        cpu_s={"component": run.cpu_component_s, "agent": run.cpu_agent_s},
        latencies=run.stages["total"],
        machine_busy_s=run.machine_busy_s,
        pair=run,
    )


def prep_medians(
    trees: dict[str, Path], model: Path, threads: int, images: list[str], rounds: int
) -> dict[str, dict[str, dict[str, float]]]:
    """tree -> image -> way -> median ms of PREP_FRAMES frames, taken in `rounds` turns that rotate over
    the trees (so that a busy moment of the machine falls on every tree alike), each turn in a new `prep`
    worker process (two processes running the same code were seen to differ by 16%)."""
    times: dict[str, dict[str, dict[str, list[float]]]] = {}
    frames = -(-PREP_FRAMES // rounds)  # per round: at least PREP_FRAMES over all rounds
    names = list(trees)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            worker = Worker("prep", trees[name], trees[name] / model, threads)
            try:
                reply = worker.ask(cmd="prep", images=images, frames=frames)["prep"]
            finally:
                worker.close()
            for image, ways in reply.items():
                for way, ms in ways.items():
                    times.setdefault(name, {}).setdefault(image, {}).setdefault(way, []).extend(ms)
    return {
        name: {
            image: {way: statistics.median(ms) for way, ms in ways.items()}
            for image, ways in by_image.items()
        }
        for name, by_image in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/benchmark.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="runtime intra-op threads, every side")
    parser.add_argument("--frames", type=int, default=300, help="frames per block (default 300)")
    parser.add_argument("--baseline", type=Path, help="an older checkout, measured in the same rounds")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=TREE",
        help="another checkout (e.g. with other branches merged), measured in the same rounds",
    )
    parser.add_argument("--batches", default="", help="comma-separated BatchSize values: a throughput table")
    args = parser.parse_args(argv)
    trees = {"new": ROOT}
    if args.baseline:
        trees["today"] = args.baseline.resolve()
    for item in args.compare:
        name, _, path = item.partition("=")
        trees[name] = Path(path).resolve()
    from modelprep.reference import blown_up

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    hd_jpeg = workdir / "1920x1080.jpg"
    hd_jpeg.write_bytes(blown_up(ROOT / "artifacts" / "images" / "motorcycle.jpg"))
    for tree in trees.values():
        compile_tree(tree)
    results = Results(threads=args.threads, rounds=args.rounds, trees=trees, load_before=os.getloadavg())
    workers: dict[str, Worker] = {}
    try:
        progress(f"starting workers ({', '.join(f'{k}: {v}' for k, v in trees.items())})")
        model = Path("artifacts/models/efficientnet-lite0")
        for name, tree in trees.items():
            workers[f"bare {name}"] = Worker("bare", tree, tree / model, args.threads)
        # bare with spinning the other way round, to show what spinning does in this run
        flipped = "off" if workers["bare new"].spins else "on"
        workers[f"bare new, spinning {flipped}"] = Worker("bare", ROOT, ROOT / model, args.threads, flipped)
        # the in-process loop with each tree's agent's spinning: the same settings on both sides
        for name in trees:
            spin = "on" if workers[f"bare {name}"].spins else "off"
            results.inprocess[name] = f"in-process, spinning {spin}"
            if results.inprocess[name] not in workers:
                workers[results.inprocess[name]] = Worker("inprocess", ROOT, ROOT / model, args.threads, spin)
        results.describe = {name: worker.describe for name, worker in workers.items()}
        contenders = [*workers, *(f"component {name}" for name in trees)]
        for round_ in range(args.rounds):
            shift = round_ % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                time.sleep(SETTLE_S)
                if contender in workers:
                    block = worker_block(workers[contender], args.frames)
                else:
                    tree = trees[contender.split()[1]]
                    block = pair_block(run_pair(tree, workdir, args.threads, args.frames, warmup=30))
                results.add(contender, block)
                progress(
                    f"round {round_ + 1}/{args.rounds} {contender}: {block.ms_per_frame:.2f} ms/frame, "
                    f"CPU {block.cpu_ms_per_frame:.2f} ms/frame"
                )
        progress("preprocessing per frame: bundled images and a 1920x1080 JPEG, trees interleaved")
        images = [str(p) for p in sorted((ROOT / "artifacts" / "images").glob("*.jpg"))] + [str(hd_jpeg)]
        results.prep = prep_medians(trees, model, args.threads, images, args.rounds)
        for size in [int(s) for s in args.batches.split(",") if s.strip()]:
            for name, tree in trees.items():
                progress(f"BatchSize {size}: component {name}")
                run = run_pair(tree, workdir, args.threads, args.frames, warmup=30, batch_size=size)
                results.batches.setdefault(size, {})[name] = run
    finally:
        for worker in workers.values():
            worker.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results.load_after = os.getloadavg()
    print_report(results, f"{platform.machine()}, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
