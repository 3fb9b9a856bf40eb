"""The inference component against the real agent (both as processes) with the bundled model and images."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ..helpers import IMAGES_DIR, MODEL_DIR, ROOT, agent_process, start_agent, stop_process

pytestmark = pytest.mark.integration

CAT_LABELS = ("tabby", "tiger cat", "egyptian cat")


class Component:
    """`python -m component` with the stdout publisher; results are read line by line as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "component",
                "--publisher",
                "stdout",
                "--model-path",
                str(MODEL_DIR),
                *args,
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.results: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            if message["topic"].startswith("edgeclassifier/status/"):
                self.statuses.append(message["payload"])
            else:
                self.results.put(message)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def take(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        taken = []
        while len(taken) < count:
            try:
                taken.append(self.results.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(
                    f"{len(taken)} of {count} results in {timeout} s; stderr:\n{self.log}"
                ) from None
        return taken

    @property
    def log(self) -> str:
        return "".join(self.stderr)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # the component prints every thread's stack
            time.sleep(1.0)
            self.proc.kill()
            self.proc.wait(10)
            for reader in self._readers:
                reader.join(10)
            raise AssertionError(
                f"the component did not exit within {timeout} s; its log:\n{self.log}"
            ) from None
        for reader in self._readers:  # the pipes end with the process; readers finish draining them
            reader.join(10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def component(*args: str, env: dict[str, str] | None = None) -> Iterator[Component]:
    comp = Component(*args, env=env)
    try:
        yield comp
    finally:
        comp.close()


def top1(result: dict[str, Any]) -> str:
    return str(result["payload"]["inference-results"][0]["Label"]).lower()


def by_image(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(r["payload"]["source"]).name: r for r in results}


def test_bundled_images_get_the_right_classes_through_the_agent(socket_path: Path) -> None:

    images = sorted(IMAGES_DIR.glob("*.jpg"))
    with (
        agent_process(socket_path, MODEL_DIR.parent),
        component(
            "--agent-socket", str(socket_path), "--interval", "0", "--max-frames", str(len(images))
        ) as comp,
    ):
        assert comp.wait() == 0, comp.log
        results = by_image(comp.take(len(images), timeout=5))
    assert top1(results["chelsea.jpg"]) in CAT_LABELS
    assert top1(results["coffee.jpg"]) in ("espresso", "cup")
    payload = results["coffee.jpg"]["payload"]
    assert results["coffee.jpg"]["topic"] == "gg/sageMakerEdgeManager/image-classification"
    assert payload["inference-type"] == "image-classification"
    assert float(payload["inference-results"][0]["Score"]) > 0.5
    assert all(float(r["Score"]) >= 0.3 for r in payload["inference-results"])
    assert payload["model"]["name"] == "efficientnet-lite0" and len(payload["model"]["sha256"]) == 64
    assert set(payload["latency-ms"]) == {"read", "preprocess", "predict", "postprocess", "total"}


def test_component_waits_for_an_agent_that_starts_later(socket_path: Path) -> None:

    with component("--agent-socket", str(socket_path), "--interval", "0", "--max-frames", "2") as comp:
        time.sleep(1.5)
        assert comp.proc.poll() is None, comp.log  # still waiting, not crashed
        with agent_process(socket_path, MODEL_DIR.parent):
            assert comp.wait() == 0, comp.log
    assert len(comp.take(2, timeout=5)) == 2
    assert "waiting for the agent" in comp.log


def test_agent_killed_and_restarted_mid_run_the_component_reloads_and_loses_no_frame(
    socket_path: Path,
) -> None:

    agent = start_agent(socket_path, MODEL_DIR.parent)
    try:
        with component(
            "--agent-socket", str(socket_path), "--interval", "0.05", "--rpc-timeout", "2"
        ) as comp:
            before = comp.take(3)
            stop_process(agent, signal.SIGKILL)
            time.sleep(1.0)
            agent = start_agent(socket_path, MODEL_DIR.parent)
            after = comp.take(6)
            comp.proc.send_signal(signal.SIGTERM)
            assert comp.wait() == 0, comp.log
    finally:
        stop_process(agent)
    seen = [r["payload"]["frame-id"] for r in before + after]
    assert seen == list(range(seen[0], seen[0] + len(seen))), f"frames lost or reordered: {seen}"
    assert all(
        r["payload"]["inference-results"] or "rocket" in r["payload"]["source"] for r in before + after
    )
    assert "loading it again" in comp.log
    assert "stopped: Counters(" in comp.log
    final = comp.statuses[-1]  # the last status message, sent on SIGTERM
    assert final["state"] == "STOPPED"
    assert final["counters"]["agent_outages"] == 1 and final["counters"]["model_loads"] == 2


def test_unreadable_images_are_skipped_counted_and_the_rest_classified(
    socket_path: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(IMAGES_DIR / "chelsea.jpg", images / "a-chelsea.jpg")
    (images / "b-garbage.jpg").write_bytes(b"this is not an image")
    (images / "c-truncated.jpg").write_bytes((IMAGES_DIR / "coffee.jpg").read_bytes()[:2000])

    with agent_process(socket_path, MODEL_DIR.parent):
        args = (
            "--agent-socket",
            str(socket_path),
            "--image-directory",
            str(images),
            "--interval",
            "0",
            "--max-frames",
            "6",
        )
        with component(*args) as comp:
            assert comp.wait() == 0, comp.log
    results = comp.take(2, timeout=5)
    assert [Path(r["payload"]["source"]).name for r in results] == ["a-chelsea.jpg", "a-chelsea.jpg"]
    assert comp.log.count("b-garbage.jpg") >= 2 and comp.log.count("c-truncated.jpg") >= 2
    assert "bad_frames=4" in comp.log


def test_sampled_captures_reach_the_agents_capture_folder(socket_path: Path, tmp_path: Path) -> None:
    capture_dir = tmp_path / "capture"
    with agent_process(socket_path, MODEL_DIR.parent, "--capture-dir", str(capture_dir)):
        args = ("--agent-socket", str(socket_path), "--interval", "0", "--max-frames", "6")
        with component(*args, "--capture-sample-rate", "1", "--capture-budget", "4") as comp:
            assert comp.wait() == 0, comp.log
            results = comp.take(6, timeout=5)
    sidecars = sorted(capture_dir.rglob("capture.json"))
    assert len(sidecars) == 4  # every inference sampled, capped by the budget
    sidecar = json.loads(sidecars[0].read_text())
    assert sidecar["model_name"] == "efficientnet-lite0"
    assert [(t["role"], t["name"], t["shape"]) for t in sidecar["tensors"]] == [
        ("input", "input", [1, 3, 224, 224]),
        ("output", "logits", [1, 1000]),
    ]
    assert len(results) == 6  # capture never held a result back
    final = comp.statuses[-1]["counters"]
    assert (final["captures_sent"], final["captures_dropped"], final["captures_failed"]) == (4, 2, 0)


def test_invalid_configuration_exits_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "component", "--top-k", "0", "--validate-config"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "TopK=0" in result.stderr


def test_validate_config_checks_the_bundled_manifest() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "component", "--validate-config"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_under_greengrass_a_sustained_agent_outage_is_reported_errored_and_recovery_running(
    socket_path: Path,
) -> None:
    """The component over the real IPC protocol to gglocal's IPC server, which records each UpdateState."""
    from gglocal.server import IpcServer

    reported: list[str] = []
    ipc = IpcServer(
        socket_path.parent / "ipc.sock", on_state=lambda _component, state: reported.append(state)
    )
    ipc.start()
    svcuid = ipc.register_component(
        "edgeclassifier.ImageClassification",
        {
            "Publisher": "stdout",
            "AgentSocket": str(socket_path),
            "InferenceInterval": 0.2,
            "ErroredAfterSeconds": 2,
            "StatusInterval": 0,
            "RpcTimeoutSeconds": 1,
        },
    )
    env = {"SVCUID": svcuid, "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": str(ipc.socket_path)}
    agent = start_agent(socket_path, MODEL_DIR.parent)
    try:
        with component(env=env) as comp:
            comp.take(2)
            stop_process(agent, signal.SIGKILL)
            wait_until(lambda: "ERRORED" in reported, 30, comp.log)
            assert comp.proc.poll() is None, comp.log  # it reports; the core decides about restarts
            agent = start_agent(socket_path, MODEL_DIR.parent)
            wait_until(lambda: reported[-1:] == ["RUNNING"], 30, comp.log)
            comp.take(2)
    finally:
        stop_process(agent)
        ipc.stop()
    assert reported == ["ERRORED", "RUNNING"]
    assert re.search(
        r"reported ERRORED to the Greengrass core: nothing classified for \d+ s: the agent", comp.log
    )


def wait_until(condition: Callable[[], bool], timeout: float, log: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s; component log:\n{log}")
        time.sleep(0.05)
