"""Test helpers: temp unix socket paths, tiny ONNX models, an agent subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient
from agent_client.errors import AgentUnavailableError
from component.app import InferenceApp, StartOptions
from component.config import build_config
from modelpkg.manifest import write_manifest

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "artifacts" / "models" / "efficientnet-lite0"
IMAGES_DIR = ROOT / "artifacts" / "images"


def write_package_manifest(
    folder: Path, name: str, model_format: str = "onnx", file: str = "model.onnx"
) -> None:
    """A schema 2 manifest.json (and a 4-line labels.txt) listing the digests of every file the folder holds,
    so that the agent loads it. The input/preprocess keys describe a 1x1 RGB image: the agent does not use
    them, and tests that drive the component with such a model give it its own manifest."""
    (folder / "labels.txt").write_text("zero\none\ntwo\nthree\n")
    write_manifest(
        folder,
        {
            "name": name,
            "version": "1.0.0",
            "format": model_format,
            "file": file,
            "input": {
                "name": "x",
                "dtype": "float32",
                "shape": [1, 3, 1, 1],
                "layout": "NCHW",
                "color_order": "RGB",
            },
            "preprocess": {
                "resize_shorter": 1,
                "crop": [1, 1],
                "resample": "bilinear",
                "mean": [0, 0, 0],
                "std": [1, 1, 1],
                "in_model": False,
            },
            "output": {"name": "y", "kind": "logits", "classes": 4},
            "labels": "labels.txt",
            "provenance": {"made_by": "tests.helpers"},
        },
    )


def write_tiny_model(folder: Path, batch: int | str = 1) -> Path:
    """A model package (manifest included) with input `x` float32 [batch, 4] and output `y` = 2 * x + 1."""
    folder.mkdir(parents=True, exist_ok=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])],
        "tiny",
        [x],
        [y],
        initializer=[two, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    write_package_manifest(folder, folder.name)
    return folder


def wait_for_agent(path: Path, timeout: float = 30.0) -> None:
    """Returns once an agent answers on path (a file alone may be a stale socket)."""
    with AgentClient(path) as client:
        client.wait_until_ready(timeout)


@contextmanager
def agent_process(socket: Path, models_root: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m agent` as a subprocess; yields once it answers; SIGTERM then SIGKILL at exit."""
    proc = start_agent(socket, models_root, *extra)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextmanager
def standin(
    build: Path, root: Path, *options: str, ready: Callable[[], bool], timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m gglocal deploy BUILD --root ROOT OPTIONS`` in the background (stderr beside ROOT),
    yielded once ``ready()``; stopped with ``gglocal stop`` after, which must end it cleanly (else killed)."""
    stderr_path = root.parent / f"{root.name}-stderr.log"
    with stderr_path.open("w") as stderr:
        command = [sys.executable, "-m", "gglocal", "deploy", str(build), "--root", str(root), *options]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + timeout
            while not ready() and time.monotonic() < deadline:
                assert process.poll() is None, stderr_path.read_text()
                time.sleep(0.1)
            assert ready(), stderr_path.read_text()
            yield process
            stop = run_module("gglocal", "stop", "--root", str(root))
            assert stop.returncode == 0, stop.stderr
            assert process.wait(timeout) == 0, stderr_path.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout)


def run_module(module: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`python -m module args` from the project root, to completion, with its output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_agent(socket: Path, models_root: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "--socket", str(socket), "--models-root", str(models_root), *extra],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_for_agent(socket)
    except AgentUnavailableError:
        stop_process(proc)
        raise
    return proc


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def run_inference(
    socket: Path,
    stop_after: float | None = None,
    options: StartOptions | None = None,
    **config: object,
) -> InferenceApp:
    """The component in this process against an in-process agent serving the bundled models, to the end of
    its source or MaxFrames, or stopped after stop_after seconds; results go to stdout as JSON lines (read
    them with capsys)."""
    server = AgentServer(AgentOptions(socket=socket, models_root=MODEL_DIR.parent))
    server.start()
    settings = {
        "agent_socket": socket,
        "inference_interval": 0.0,
        "publisher": "stdout",
        "status_interval": 0.0,
        **config,
    }
    app = InferenceApp(build_config(settings), threading.Event(), options=options)
    timer = threading.Timer(stop_after, app.stop) if stop_after is not None else None
    if timer is not None:
        timer.start()
    try:
        app.start()
        app.run()
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()
        app.close()
        server.stop(grace=1.0)
    return app


def stdout_payloads(out: str) -> list[dict[str, Any]]:
    """The payloads of the stdout publisher's JSON lines."""
    return [json.loads(line)["payload"] for line in out.splitlines() if line.strip()]
