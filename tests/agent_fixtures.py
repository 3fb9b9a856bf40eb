"""What the agent's hardening tests need: slow models, a shared library with a constructor, another local user
running a fake agent, a folder like /tmp.

The fake agent (tests/fake_agent.py) is the attacker of issue 11: another user's process serving the Edge
Manager API on the agent's socket path, answering every Predict with the same class. It is a fake by nature.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .helpers import ROOT, write_package_manifest

OTHER_USER = "nobody"


def other_uid() -> int:
    """The uid of another local user (nobody). Reproducing another user needs root, as CI runs."""
    assert os.geteuid() == 0, "these tests reproduce another local user: run them as root, as CI does"
    return pwd.getpwnam(OTHER_USER).pw_uid


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder like /tmp (mode 1777: everyone may create entries, the sticky bit keeps them their own)."""
    folder = Path(tempfile.mkdtemp(prefix="gg-shared-", dir="/tmp"))
    os.chmod(folder, 0o1777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class FakeAgent:
    pid: int
    calls: list[str] = field(default_factory=list)  # the methods it was called with, filled in once it ends


@contextmanager
def fake_agent(socket: Path, uid: int) -> Iterator[FakeAgent]:
    """tests/fake_agent.py serving socket as uid; yields once it listens."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_agent.py"), str(socket), str(uid)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    fake = FakeAgent(proc.pid)
    try:
        assert proc.stdout.readline().strip() == "LISTENING", "the fake agent did not start"
        yield fake
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
        fake.calls = [line.split()[1] for line in output.splitlines() if line.startswith("CALL ")]


def _save(model: onnx.ModelProto, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    write_package_manifest(folder, name)
    return folder


def write_slow_run_model(folder: Path, nodes: int = 100, dim: int = 1024) -> Path:
    """x float32 [1, 4] -> y [1, 4] through `nodes` MatMuls of [dim, dim] (about 2 s per run on one core
    here); ONNX Runtime can stop it between two MatMuls."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    weights = numpy_helper.from_array(np.full((dim, dim), 1.0 / dim, np.float32), "w")
    shape = numpy_helper.from_array(np.array([dim, dim], np.int64), "shape")
    graph_nodes = [
        helper.make_node("ReduceMean", ["x"], ["x0"], keepdims=1),
        helper.make_node("Expand", ["x0", "shape"], ["h0"]),
        *(helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]) for i in range(nodes)),
        helper.make_node("ReduceMean", [f"h{nodes}"], ["m"], keepdims=1),
        helper.make_node("Add", ["x", "m"], ["y"]),
    ]
    graph = helper.make_graph(graph_nodes, "slow-run", [x], [y], initializer=[weights, shape])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder, "slow-run")


def write_slow_load_model(folder: Path, nodes: int = 40_000) -> Path:
    """x -> y = x through `nodes` Mul-by-one nodes: ONNX Runtime takes a second or more to build the session
    (its optimiser folds them), the run is instant."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    ones = [numpy_helper.from_array(np.array([1.0], np.float32), f"c{i}") for i in range(nodes)]
    names = ["x", *(f"t{i}" for i in range(nodes))]
    graph_nodes = [helper.make_node("Mul", [names[i], f"c{i}"], [names[i + 1]]) for i in range(nodes)]
    graph_nodes.append(helper.make_node("Identity", [names[-1]], ["y"]))
    graph = helper.make_graph(graph_nodes, "slow-load", [x], [y], initializer=ones)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder, "slow-load")


def build_constructor_library(path: Path, marker: Path) -> Path:
    """A shared object whose constructor, run by dlopen, writes marker: proof that it was loaded."""
    source = path.with_suffix(".c")
    source.write_text(
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void planted(void) {\n"
        f'    FILE *f = fopen("{marker}", "w");\n'
        '    if (f) { fputs("constructor ran\\n", f); fclose(f); }\n'
        "}\n"
    )
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True, timeout=60)
    source.unlink()
    return path


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
