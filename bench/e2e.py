"""The deployed pair, cold: a fresh agent process on a unix socket, then a fresh component process that
classifies the tree's bundled images through it (`--interval 0`, results as JSON lines on stdout). Their
code is compiled to bytecode first (`compile_tree`), as the install step leaves it on a device.

Measured from outside, the same way for either source tree: the time from spawning the agent until its
socket accepts a connection, from spawning the component until its first result line, then over a window
of results (after `warmup` of them): wall time, CPU seconds of each process (/proc), the machine's busy time
(what else ran), each result's own stage latencies (`latency-ms` of the payload), and the resident memory of
both processes near the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import procstat

STAGES = ("read", "preprocess", "predict", "postprocess", "total")


@dataclass(frozen=True)
class PairRun:
    agent_ready_s: float
    first_result_s: float
    frames: int  # results in the window
    wall_s: float
    cpu_component_s: float
    cpu_agent_s: float
    machine_busy_s: float  # every core's busy time during the window, these processes included
    component: procstat.Memory
    agent: procstat.Memory
    model: str
    stages: dict[str, list[float]] = field(default_factory=dict)


PACKAGES = ("agent", "agent_client", "component", "ggrules", "modelpkg")  # what the two processes import


def compile_tree(tree: Path) -> None:
    """The tree's Python files compiled to bytecode beside them, as the install step compiles the deployed
    code (recipes/installer.py): a cold start then measures starting, not compiling (about 0.1 s of this
    project's code on a slow 2-core machine). Done alike for every tree, older ones included."""
    folders = [str(tree / name) for name in PACKAGES if (tree / name).is_dir()]
    command = [sys.executable, "-m", "compileall", "-q", *folders]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def _spawn(tree: Path, args: list[str], **kwargs: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(tree), ORT_DISABLE_TELEMETRY="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, *args], cwd=tree, env=env, text=True, **kwargs
    )


def _wait_for_socket(path: Path, agent: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited with {agent.returncode} before listening on {path}")
        if path.exists():
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(path))
                    return
                except OSError:
                    pass
        time.sleep(0.005)
    raise RuntimeError(f"the agent did not listen on {path} within {timeout:g} s")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run_pair(
    tree: Path, workdir: Path, threads: int, frames: int, warmup: int, batch_size: int = 1
) -> PairRun:
    """One cold start of agent + component for tree; `frames` results, the window after `warmup`."""
    sock = workdir / f"agent-{time.monotonic_ns()}.sock"
    log = (workdir / "agent.log").open("a")
    started = time.perf_counter()
    models = tree / "artifacts" / "models"
    options = ["--socket", str(sock), "--models-root", str(models), "--threads", str(threads)]
    agent = _spawn(tree, ["-m", "agent", *options, "--log-level", "WARNING"], stderr=log)
    component = None
    try:
        _wait_for_socket(sock, agent)
        agent_ready = time.perf_counter() - started
        command = ["-m", "component", "--agent-socket", str(sock), "--interval", "0"]
        command += ["--max-frames", str(frames), "--publisher", "stdout", "--status-interval", "0"]
        command += ["--log-level", "WARNING", "--batch-size", str(batch_size)]
        spawned = time.perf_counter()
        component = _spawn(tree, command, stdout=subprocess.PIPE, stderr=log)
        assert component.stdout is not None
        first = None
        seen, model = 0, ""
        stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        mark: tuple[float, float, float, float] | None = None
        end = mark
        memories = (procstat.Memory(0, 0), procstat.Memory(0, 0))
        for line in component.stdout:
            message = json.loads(line)
            payload = message.get("payload", {})
            if "inference-results" not in payload:
                continue
            seen += 1
            now = time.perf_counter()
            if first is None:
                first = now - spawned
                model = f"{payload['model']['name']} {payload['model']['version']}"
            if seen == warmup or seen == frames - 1:
                sample = (
                    now,
                    procstat.cpu_seconds(component.pid),
                    procstat.cpu_seconds(agent.pid),
                    procstat.machine_busy_seconds(),
                )
                if seen == warmup:
                    mark = sample
                else:
                    end = sample
                    memories = (procstat.memory(component.pid), procstat.memory(agent.pid))
            if warmup < seen < frames:
                for stage in STAGES:
                    stages[stage].append(float(payload["latency-ms"][stage]))
        if component.wait(60) != 0 or mark is None or end is None or first is None:
            tail = (workdir / "agent.log").read_text()[-2000:]
            raise RuntimeError(f"the component run failed (exit {component.returncode}); log:\n{tail}")
    finally:
        if component is not None:
            _stop(component)
        _stop(agent)
        log.close()
        sock.unlink(missing_ok=True)
    return PairRun(
        agent_ready_s=agent_ready,
        first_result_s=first,
        frames=frames - 1 - warmup,
        wall_s=end[0] - mark[0],
        cpu_component_s=end[1] - mark[1],
        cpu_agent_s=end[2] - mark[2],
        machine_busy_s=end[3] - mark[3],
        component=memories[0],
        agent=memories[1],
        model=model,
        stages=stages,
    )
