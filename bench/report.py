"""The benchmark's blocks, their medians over rounds, and the table with the goal's ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from e2e import STAGES, PairRun

HD = "1920x1080.jpg"
# the goal of issue 12: ratio name -> the most it may be
GOALS = {
    "component / bare ONNX Runtime, ms per frame": 1.6,
    "component / in-process AWS-style loop, ms per frame": 0.95,
    "CPU per frame, (agent + component) / bare": 1.5,
    "1920x1080 JPEG preprocessing, new / today": 0.4,
}


@dataclass(frozen=True)
class Block:
    """One contender's block of frames in one round."""

    frames: int
    wall_s: float
    cpu_s: dict[str, float]  # process -> CPU seconds over the block
    latencies: list[float]  # ms, one per frame
    machine_busy_s: float  # all cores' busy seconds over the block, ours included
    pair: PairRun | None = None

    @property
    def ms_per_frame(self) -> float:
        return self.wall_s * 1000 / self.frames

    @property
    def cpu_ms_per_frame(self) -> float:
        return sum(self.cpu_s.values()) * 1000 / self.frames

    @property
    def foreign_cores(self) -> float:
        """Cores kept busy by other processes during the block (the machine's busy time minus ours)."""
        return max(0.0, self.machine_busy_s - sum(self.cpu_s.values())) / self.wall_s


@dataclass
class Results:
    threads: int
    rounds: int
    trees: dict[str, Path]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    describe: dict[str, str] = field(default_factory=dict)
    inprocess: dict[str, str] = field(default_factory=dict)  # tree -> its in-process contender
    blocks: dict[str, list[Block]] = field(default_factory=dict)
    prep: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # tree -> image -> way -> ms
    batches: dict[int, dict[str, PairRun]] = field(default_factory=dict)

    def add(self, contender: str, block: Block) -> None:
        self.blocks.setdefault(contender, []).append(block)

    def ms_per_frame(self, contender: str) -> float:
        return statistics.median(block.ms_per_frame for block in self.blocks[contender])

    def cpu_per_frame(self, contender: str, process: str | None = None) -> float:
        """All rounds' CPU over all their frames (so the 10 ms tick resolution averages out)."""
        blocks = self.blocks[contender]
        cpu = sum(b.cpu_s[process] if process else sum(b.cpu_s.values()) for b in blocks)
        return cpu * 1000 / sum(b.frames for b in blocks)

    def pairs(self, tree: str) -> list[PairRun]:
        return [b.pair for b in self.blocks[f"component {tree}"] if b.pair is not None]

    def stage(self, tree: str, stage: str, average: Callable[[list[float]], float]) -> float:
        return average([v for run in self.pairs(tree) for v in run.stages[stage]])

    def old_hd_preprocessing(self) -> tuple[float, str]:
        """Today's 1080p preprocessing: the baseline tree's own code, else the 1.x float path here."""
        if "today" in self.prep:
            return self.prep["today"][HD]["native"], "the baseline tree's own preprocessing"
        return self.prep["new"][HD]["legacy"], "modelprep.reference.legacy_tensor (the 1.x float path)"


def _row(label: str, values: list[str], width: int = 60, column: int = 14) -> str:
    return f"{label:<{width}}" + "".join(f"{v:>{column}}" for v in values)


def _header(results: Results, machine: str) -> None:
    load = [" ".join(f"{v:.2f}" for v in load) for load in (results.load_before, results.load_after)]
    print(f"{machine}; load average {load[0]} before, {load[1]} after")
    print(
        f"every runtime session through the agent's ONNX Runtime backend class: intra-op threads "
        f"{results.threads}, inter-op 1, all graph optimisations, spinning as each tree's agent sets it "
        f"(see each 'bare' line below)"
    )
    print(
        f"{results.rounds} rounds, contenders interleaved; ms/frame = a block's wall time / its frames, "
        f"the median over rounds; CPU = each process's utime + stime (/proc) over the same frames"
    )
    for name, path in results.trees.items():
        print(f"  tree {name}: {path}")
    for name, text in results.describe.items():
        print(f"  {name}: {text}")
    blocks = [b for blocks in results.blocks.values() for b in blocks]
    mean, most = statistics.mean(b.foreign_cores for b in blocks), max(b.foreign_cores for b in blocks)
    print(f"  other processes kept {mean:.2f} cores busy on average during the blocks (at most {most:.2f})")


def _per_tree(results: Results, trees: list[str]) -> None:
    column = max(14, *(len(t) + 2 for t in trees))

    def row(label: str, values: list[str]) -> str:
        return _row(label, values, 60, column)

    def each(value: Callable[[str], float], fmt: str = "{:.2f}") -> list[str]:
        return [fmt.format(value(tree)) for tree in trees]

    med = statistics.median
    print(row("", trees))
    print(row("bare ONNX Runtime, ms/frame", each(lambda t: results.ms_per_frame(f"bare {t}"))))
    print(
        row(
            "  median of one run, ms",
            each(lambda t: med(med(b.latencies) for b in results.blocks[f"bare {t}"])),
        )
    )
    print(row("  CPU ms/frame", each(lambda t: results.cpu_per_frame(f"bare {t}"))))
    for contender in results.blocks:
        if contender.startswith("bare new, spinning"):
            print(row(f"{contender} (for comparison), ms/frame", [f"{results.ms_per_frame(contender):.2f}"]))
    print(
        row(
            "in-process AWS-style loop, same spinning, ms/frame",
            each(lambda t: results.ms_per_frame(results.inprocess[t])),
        )
    )
    print(row("  CPU ms/frame", each(lambda t: results.cpu_per_frame(results.inprocess[t]))))
    print(
        row(
            "component through the agent, end to end, ms/frame",
            each(lambda t: results.ms_per_frame(f"component {t}")),
        )
    )
    print(row("  frames per second", each(lambda t: 1000 / results.ms_per_frame(f"component {t}"), "{:.1f}")))
    for stage in STAGES:
        print(
            row(
                f"  {stage}: mean / median ms (its results' latency-ms)",
                [
                    f"{results.stage(t, stage, statistics.mean):.2f} / {results.stage(t, stage, med):.2f}"
                    for t in trees
                ],
            )
        )
    for process in ("component", "agent"):
        cpu = [results.cpu_per_frame(f"component {t}", process) for t in trees]
        print(row(f"  CPU ms/frame, {process} process", [f"{v:.2f}" for v in cpu]))
    print(row("  CPU ms/frame, agent + component", each(lambda t: results.cpu_per_frame(f"component {t}"))))
    print(
        row(
            "  first result after a cold start, s (component spawned)",
            each(lambda t: med(r.first_result_s for r in results.pairs(t)), "{:.3f}"),
        )
    )
    print(
        row(
            "  agent listening after spawn, s",
            each(lambda t: med(r.agent_ready_s for r in results.pairs(t)), "{:.3f}"),
        )
    )
    for process in ("component", "agent"):
        print(
            row(
                f"  RSS MB of the {process}, now (peak)",
                [
                    f"{med(getattr(r, process).rss_mb for r in results.pairs(t)):.0f} "
                    f"({med(getattr(r, process).peak_mb for r in results.pairs(t)):.0f})"
                    for t in trees
                ],
            )
        )


def _prep(results: Results) -> None:
    print("preprocessing per frame, JPEG bytes in memory -> model input, median ms (trees in turns)")
    columns = [(tree, way) for tree, images in results.prep.items() for way in images[HD]]
    labels = {"native": "its own", "legacy": "1.x float"}
    width = max(18, *(len(f"{tree} {labels[way]}") + 2 for tree, way in columns))
    print(_row("", [f"{tree} {labels[way]}" for tree, way in columns], 24, width))
    for image in results.prep[columns[0][0]]:
        print(_row(f"  {image}", [f"{results.prep[t][image][w]:.2f}" for t, w in columns], 24, width))


def _batches(results: Results, trees: list[str]) -> None:
    if not results.batches:
        return
    print("BatchSize: the component end to end, frames per second and Predict ms per frame (median)")
    for size, runs in results.batches.items():
        cells = [
            f"{runs[t].frames / runs[t].wall_s:.1f} fps, "
            f"{statistics.median(runs[t].stages['predict']) / size:.2f} ms"
            for t in trees
        ]
        print(_row(f"  {size}", cells, 24, 24))


def _ratios(results: Results, trees: list[str]) -> None:
    print("ratios (goal)")
    for tree in trees:
        component = results.ms_per_frame(f"component {tree}")
        values = {
            "component / bare ONNX Runtime, ms per frame": component / results.ms_per_frame(f"bare {tree}"),
            "component / in-process AWS-style loop, ms per frame": component
            / results.ms_per_frame(results.inprocess[tree]),
            "CPU per frame, (agent + component) / bare": results.cpu_per_frame(f"component {tree}")
            / results.cpu_per_frame(f"bare {tree}"),
        }
        if tree != "today":
            old, _ = results.old_hd_preprocessing()
            values["1920x1080 JPEG preprocessing, new / today"] = results.prep[tree][HD]["native"] / old
        for what, value in values.items():
            verdict = "met" if value <= GOALS[what] else "NOT met"
            print(f"  {tree}: {what:<52}{value:6.2f}   (goal <= {GOALS[what]}: {verdict})")
    print(f"  (today's 1080p preprocessing: {results.old_hd_preprocessing()[1]})")
    if "today" in trees:
        for tree in trees:
            if tree != "today":
                ratio = results.ms_per_frame(f"component {tree}") / results.ms_per_frame("component today")
                print(f"  component {tree} / today, ms per frame: {ratio:.2f}")


def print_report(results: Results, machine: str) -> None:
    trees = list(results.trees)
    _header(results, machine)
    _per_tree(results, trees)
    _prep(results)
    _batches(results, trees)
    _ratios(results, trees)
