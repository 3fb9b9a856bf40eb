"""The inference component against the real agent (both as processes) with the bundled model and images."""

from __future__ import annotations

import json
import os
import queue
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

from ..helpers import IMAGES_DIR, MODEL_DIR, ROOT, agent_process, run_module, start_agent, stop_process

pytestmark = pytest.mark.integration

CAT_LABELS = ("tabby", "tiger cat", "egyptian cat")


class Component:
    """`python -m component` with the stdout publisher; results are read line by line as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
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
            cwd=cwd,
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
def component(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Iterator[Component]:
    comp = Component(*args, env=env, cwd=cwd)
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
    assert "stopped: {" in comp.log
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
    assert "'bad_frames': 4" in comp.log


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
        ("input", "input", [1, 224, 224, 3]),  # the bundled model takes uint8 NHWC pixels
        ("output", "logits", [1, 1000]),
    ]
    assert len(results) == 6  # capture never held a result back
    final = comp.statuses[-1]["counters"]
    assert (final["captures_sent"], final["captures_dropped"], final["captures_failed"]) == (4, 2, 0)


def validate_config(*flags: str) -> subprocess.CompletedProcess[str]:
    """`python -m component --validate-config` with flags, outside Greengrass."""
    return subprocess.run(
        [sys.executable, "-m", "component", "--validate-config", *flags],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_invalid_configuration_exits_with_the_reason() -> None:
    result = validate_config("--top-k", "0")
    assert result.returncode == 2
    assert "TopK=0" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-path", "/nonexistent/model"], "the model cannot be used"),
        (["--image-directory", "/nonexistent/images"], "the source cannot be opened"),
    ],
    ids=["model", "images"],
)
def test_outside_greengrass_an_unusable_model_or_source_exits_2_with_what_to_do(
    socket_path: Path, args: list[str], message: str
) -> None:
    """No configuration update can fix it outside Greengrass: exit with the reason instead of waiting."""
    agent = start_agent(socket_path, MODEL_DIR.parent)
    try:
        result = run_module("component", "--agent-socket", str(socket_path), "--publisher", "stdout", *args)
    finally:
        stop_process(agent)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_wheel_install_without_a_bundled_model_says_to_pass_one(socket_path: Path, tmp_path: Path) -> None:
    """An installed wheel has the code and no artifacts/: the default model is missing, and the message says
    what to pass (copy of the packages only, as a wheel lays them out)."""
    for package in ("component", "agent_client", "modelpkg", "ggrules"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    agent = start_agent(socket_path, MODEL_DIR.parent)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "component",
                "--agent-socket",
                str(socket_path),
                "--image-directory",
                str(IMAGES_DIR),
            ],
            cwd=tmp_path,
            env=dict(os.environ, PYTHONPATH=str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_process(agent)
    assert result.returncode == 2, result.stderr
    assert "none is bundled here (an installed wheel ships none): pass --model-path FOLDER" in result.stderr


def test_validate_config_checks_the_bundled_manifest() -> None:
    result = validate_config()
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    printed = json.loads(result.stdout.removeprefix("configuration OK: "))
    assert (printed["TopK"], printed["ImageDirectory"], printed["Source"]) == (5, None, "")


def test_validate_config_prints_a_sources_credentials_masked() -> None:
    result = validate_config("--source", "rtsp://admin:s3cret@cam/s")
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout and '"Source":"rtsp://***@cam/s"' in result.stdout


ACCESS = {
    "aws.greengrass.ipc.mqttproxy": {
        "t:1": {
            "operations": ["aws.greengrass#PublishToIoTCore"],
            "resources": ["gg/sageMakerEdgeManager/image-classification", "edgeclassifier/status/+"],
        }
    }
}


class RecordingIot:
    """gglocal's IoT Core seam, recording what the core accepted; refuses the first `refuse` publishes with
    ServiceError (as a core whose spooler is full answers)."""

    def __init__(self, refuse: int = 0) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.refuse = refuse

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def publish(self, message: Any) -> None:
        from gglocal.errors import IpcOperationError

        if self.refuse:
            self.refuse -= 1
            raise IpcOperationError("ServiceError", "spooler full")
        self.messages.append((message.topic, json.loads(message.payload)))

    def subscribe(self, topic_filter: str, qos: int, deliver: Any) -> Callable[[], None]:
        return lambda: None

    def results(self) -> list[dict[str, Any]]:
        return [p for t, p in self.messages if t.startswith("gg/")]

    def configuration_states(self) -> list[str]:
        """Each status message's configuration state (APPLIED, REFUSED, PENDING)."""
        return [
            p.get("configuration", {}).get("state", "")
            for t, p in self.messages
            if t.startswith("edgeclassifier/status/")
        ]

    def states(self) -> list[str]:
        return [p["state"] for t, p in self.messages if t.startswith("edgeclassifier/status/")]


@contextmanager
def greengrass(
    socket_path: Path, iot: RecordingIot, **config: Any
) -> Iterator[tuple[dict[str, str], list[str], Any]]:
    """gglocal's IPC server in this process for one component; yields the component's environment and the
    states it reports with UpdateState, and the server (to change the configuration as a deployment would)."""
    from gglocal.server import IpcServer

    reported: list[str] = []
    ipc = IpcServer(
        socket_path.parent / "ipc.sock",
        iot=iot,
        on_state=lambda _component, state: reported.append(state),  # type: ignore[arg-type]
    )
    ipc.start()
    settings = {"Publisher": "ipc", "AgentSocket": str(socket_path), "accessControl": ACCESS, **config}
    svcuid = ipc.register_component("edgeclassifier.ImageClassification", settings)
    try:
        yield (
            {"SVCUID": svcuid, "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": str(ipc.socket_path)},
            reported,
            ipc,
        )
    finally:
        ipc.stop()


def test_under_greengrass_an_agent_outage_is_never_reported_errored_and_results_resume(
    socket_path: Path, tmp_path: Path
) -> None:
    """Three times ErroredAfterSeconds without the agent: no ERRORED (the Java nucleus would restart the
    component, BROKEN at the third); every frame read after the agent is back is published."""
    iot = RecordingIot()
    config = {
        "InferenceInterval": "0.2",
        "ErroredAfterSeconds": "2",
        "StatusInterval": "0.5",
        "RpcTimeoutSeconds": "1",
    }
    agent = start_agent(socket_path, MODEL_DIR.parent)
    with greengrass(socket_path, iot, **config) as (env, reported, _):
        try:
            with component(env=env, cwd=tmp_path) as comp:
                wait_until(lambda: len(iot.results()) >= 2, 60, comp.log)
                stop_process(agent, signal.SIGKILL)
                time.sleep(6.5)
                assert comp.proc.poll() is None, comp.log
                assert "WAITING_FOR_AGENT" in iot.states()
                agent = start_agent(socket_path, MODEL_DIR.parent)
                before = len(iot.results())
                wait_until(lambda: len(iot.results()) >= before + 3, 60, comp.log)
        finally:
            stop_process(agent)
    assert reported == []
    ids = [r["frame-id"] for r in iot.results()]
    assert ids == list(range(ids[0], ids[0] + len(ids))), f"frames lost or reordered: {ids}"
    assert iot.states()[-1] == "STOPPED"


def test_under_greengrass_a_wedged_loop_reports_errored_then_exits_to_be_restarted(
    socket_path: Path, tmp_path: Path
) -> None:
    """A real wedge: results go to stdout and nobody reads it, so the pipe fills and the loop's write blocks
    for good. The watchdog reports ERRORED, and exits (70) when no core restarts it (as on nucleus lite)."""
    iot = RecordingIot()
    agent = start_agent(socket_path, MODEL_DIR.parent)
    with greengrass(socket_path, iot, Publisher="stdout", InferenceInterval="0", ErroredAfterSeconds="2") as (
        env,
        reported,
        _,
    ):
        log = tmp_path / "component.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "component", "--model-path", str(MODEL_DIR)],
                cwd=tmp_path,
                env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
                stdout=subprocess.PIPE,  # never read
                stderr=stderr,
            )
            try:
                code = proc.wait(90)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                assert proc.stdout is not None
                proc.stdout.close()
                stop_process(agent)
        text = log.read_text()
    assert code == 70, text
    assert reported == ["ERRORED"]
    assert "the run loop has made no progress for" in text
    assert json.loads((tmp_path / "watchdog-restarts.json").read_text())  # counted toward the hourly budget


def test_sigterm_leaves_no_traceback_publishes_stopped_and_keeps_unsent_results_for_the_next_start(
    socket_path: Path, tmp_path: Path
) -> None:
    iot = RecordingIot(refuse=10_000)  # the core refuses every publish: results pile up in the component
    # DEBUG: after the first, each refusal is logged at debug level only (no flood at WARNING)
    config = {"InferenceInterval": "0.1", "StatusInterval": "0", "LogLevel": "DEBUG"}
    agent = start_agent(socket_path, MODEL_DIR.parent)
    try:
        with greengrass(socket_path, iot, **config) as (env, _, _):
            with component(env=env, cwd=tmp_path) as comp:
                wait_until(lambda: "publish failed, 5 result(s) kept" in comp.log, 60, comp.log)
                comp.proc.send_signal(signal.SIGTERM)
                assert comp.wait() == 0, comp.log
            first = comp.log
        kept = [
            json.loads(line) for line in (tmp_path / "unpublished-results.jsonl").read_text().splitlines()
        ]
        assert len(kept) >= 5 and [k["payload"]["frame-id"] for k in kept][:5] == [1, 2, 3, 4, 5]
        iot.refuse = 0
        with greengrass(socket_path, iot, **config) as (env, _, _):
            with component(env=env, cwd=tmp_path) as comp:
                wait_until(lambda: len(iot.results()) >= len(kept) + 1, 60, comp.log)
                comp.proc.send_signal(signal.SIGTERM)
                assert comp.wait() == 0, comp.log
            second = comp.log
    finally:
        stop_process(agent)
    assert "Traceback" not in first and "Traceback" not in second
    assert [r["frame-id"] for r in iot.results()][: len(kept)] == [k["payload"]["frame-id"] for k in kept]
    assert not (tmp_path / "unpublished-results.jsonl").exists()


@contextmanager
def classifying(
    socket_path: Path, tmp_path: Path, iot: RecordingIot, **config: Any
) -> Iterator[tuple[Any, Any]]:
    """The agent, gglocal's IPC server and the component under it, once a first result is out; yields the
    component and the server."""
    agent = start_agent(socket_path, MODEL_DIR.parent)
    try:
        with (
            greengrass(socket_path, iot, **config) as (env, _, ipc),
            component(env=env, cwd=tmp_path) as comp,
        ):
            wait_until(lambda: len(iot.results()) >= 1, 60, comp.log)
            yield comp, ipc
    finally:
        stop_process(agent)


def test_sigterm_under_greengrass_publishes_stopped(socket_path: Path, tmp_path: Path) -> None:
    iot = RecordingIot()
    with classifying(socket_path, tmp_path, iot, InferenceInterval="0.2", StatusInterval="30") as (comp, _):
        comp.proc.send_signal(signal.SIGTERM)
        assert comp.wait() == 0, comp.log
    assert iot.states() == ["STOPPED"] and "Traceback" not in comp.log
    assert "subscribing again" not in comp.log  # the streams closing with the component are not an outage


def test_a_topic_its_own_access_control_does_not_allow_is_refused_and_results_keep_flowing(
    socket_path: Path, tmp_path: Path
) -> None:
    """Changing PublishResultsOnTopic alone (accessControl still naming the old topic) would have every result
    refused by the core while the component looked healthy: the change is refused with the reason, results
    stay on the old topic, and the status says REFUSED. Merged together with accessControl, it applies."""
    iot = RecordingIot()
    component_name = "edgeclassifier.ImageClassification"
    with classifying(socket_path, tmp_path, iot, InferenceInterval="0.2", StatusInterval="0.5") as (
        comp,
        ipc,
    ):
        ipc.config.merge(component_name, {"PublishResultsOnTopic": "gg/elsewhere"})
        wait_until(lambda: "not allowed by this configuration's accessControl" in comp.log, 30, comp.log)
        wait_until(lambda: "REFUSED" in iot.configuration_states(), 30, comp.log)
        before = len(iot.results())
        wait_until(lambda: len(iot.results()) >= before + 3, 60, comp.log)
        assert not [t for t, _ in iot.messages if t == "gg/elsewhere"]
        policy = {
            "operations": ["aws.greengrass#PublishToIoTCore"],
            "resources": ["gg/elsewhere", "edgeclassifier/status/+"],
        }
        ipc.config.merge(component_name, {"accessControl": {"aws.greengrass.ipc.mqttproxy": {"t:1": policy}}})
        wait_until(lambda: any(t == "gg/elsewhere" for t, _ in iot.messages), 30, comp.log)
    assert "Traceback" not in comp.log


def test_a_topic_and_its_access_control_written_one_key_at_a_time_end_applied(
    socket_path: Path, tmp_path: Path
) -> None:
    """Nucleus lite writes a deployment's MERGE one key at a time, each with its event: the component reads
    the topic before the accessControl that allows it (held here until it has), refuses that half, and
    applies the whole once the rest arrives."""
    iot = RecordingIot()
    component_name = "edgeclassifier.ImageClassification"
    policy = {
        "operations": ["aws.greengrass#PublishToIoTCore"],
        "resources": ["gg/elsewhere", "edgeclassifier/status/+"],
    }
    update = {
        "PublishResultsOnTopic": "gg/elsewhere",
        "accessControl": {"aws.greengrass.ipc.mqttproxy": {"t:1": policy}},
    }
    with classifying(socket_path, tmp_path, iot, InferenceInterval="0.2", StatusInterval="0.3") as (
        comp,
        ipc,
    ):

        def slow_writer(component: str, path: tuple[str, ...]) -> None:
            if path == ("PublishResultsOnTopic",):  # the next key waits until the half was refused
                wait_until(lambda: "REFUSED" in iot.configuration_states(), 30, comp.log)

        ipc.config.subscribe(component_name, (), slow_writer)
        ipc.config.merge(component_name, update, key_by_key=True)
        wait_until(lambda: any(t == "gg/elsewhere" for t, _ in iot.messages), 30, comp.log)
        wait_until(lambda: iot.configuration_states()[-1] == "APPLIED", 30, comp.log)
    assert "not allowed by this configuration's accessControl" in comp.log
    assert "Traceback" not in comp.log


def test_a_refused_update_still_reports_its_misspelt_keys(socket_path: Path, tmp_path: Path) -> None:
    """Measured on nucleus lite: an update both invalid (TopK 0) and misspelt (Topk) was refused, but the
    misspelt key went unreported until a later update applied. Both are reported at once now."""
    iot = RecordingIot()
    with classifying(socket_path, tmp_path, iot, InferenceInterval="0.2", StatusInterval="0.3") as (
        comp,
        ipc,
    ):
        ipc.config.merge("edgeclassifier.ImageClassification", {"TopK": "0", "Topk": "3"})
        wait_until(lambda: bool(refused_with_ignored(iot)), 30, comp.log)
    status = refused_with_ignored(iot)[-1]
    assert "TopK='0'" in status["reason"] and status["ignored-keys"] == ["Topk"]
    assert "unknown configuration key(s) Topk ignored" in comp.log


def test_a_live_source_that_gives_no_frame_never_replaces_the_working_one(
    socket_path: Path, tmp_path: Path
) -> None:
    """Before: a new Source was not opened before the old one was closed, so a misspelt RTSP URL replaced a
    working camera. Now the new source must give a frame first; until then the old one goes on."""
    iot = RecordingIot()
    with classifying(socket_path, tmp_path, iot, InferenceInterval="0.2", StatusInterval="0.5") as (
        comp,
        ipc,
    ):
        ipc.config.merge("edgeclassifier.ImageClassification", {"Source": "rtsp://127.0.0.1:9/no-camera"})
        wait_until(lambda: "the working source stays" in comp.log, 30, comp.log)
        before = len(iot.results())
        wait_until(lambda: len(iot.results()) >= before + 3, 30, comp.log)
    assert all(Path(r["source"]).suffix == ".jpg" for r in iot.results())
    assert "REFUSED" in iot.configuration_states()


def refused_with_ignored(iot: RecordingIot) -> list[dict[str, Any]]:
    return [
        p["configuration"]
        for t, p in iot.messages
        if t.startswith("edgeclassifier/status/")
        and p.get("configuration", {}).get("state") == "REFUSED"
        and p["configuration"]["ignored-keys"]
    ]


def wait_until(condition: Callable[[], bool], timeout: float, log: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s; component log:\n{log}")
        time.sleep(0.05)
