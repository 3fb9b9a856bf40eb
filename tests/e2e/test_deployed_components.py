"""The built Greengrass components, deployed on the local stand-in of the core, end to end.

build.py -> `python -m gglocal deploy` (a subprocess running each component's real Install and Run steps:
a pinned virtualenv from the offline wheelhouse that scripts/setup fills, then the agent and the inference
component as processes) -> IPC PublishToIoTCore -> a real mosquitto on a free port -> a paho subscriber.
One deployment serves the module; each test changes the configuration it needs at run time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.mqtt_broker import Mosquitto, MqttSubscriber, Received

from ..helpers import ROOT

pytestmark = pytest.mark.e2e

INFERENCE = "edgeclassifier.ImageClassification"
AGENT = "edgeclassifier.Agent"
RESULTS = "gg/sageMakerEdgeManager/image-classification"
STATUS = "edgeclassifier/status/e2e-thing"
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}
INSTALL_TIMEOUT = 600.0
WHEELHOUSE = ROOT / ".wheelhouse"


@dataclass
class Deployment:
    root: Path
    broker: Mosquitto
    subscriber: MqttSubscriber
    process: subprocess.Popen[bytes]
    log: Path

    def gglocal(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gglocal", *args, "--root", str(self.root)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def configure(self, merge: dict[str, Any]) -> None:
        self.gglocal("config", "--component", INFERENCE, "--merge", json.dumps(merge))

    def component_log(self) -> str:
        path = self.root / "logs" / f"{INFERENCE}.log"
        return path.read_text() if path.exists() else ""

    def results(self, topic: str = RESULTS, since: int = 0) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.subscriber.messages[since:] if m.topic == topic]

    def wait(self, predicate: Callable[[list[Received]], bool], timeout: float, what: str) -> list[Received]:
        messages = self.subscriber.wait_until(predicate, timeout)
        if not predicate(messages):
            raise AssertionError(
                f"timed out waiting for {what}; component log:\n{self.component_log()[-4000:]}\n"
                f"stand-in log:\n{self.log.read_text()[-4000:]}"
            )
        return messages


def on_topic(topic: str, count: int, since: int = 0) -> Callable[[list[Received]], bool]:
    return lambda messages: sum(m.topic == topic for m in messages[since:]) >= count


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not (WHEELHOUSE / ".requirements.sha256").exists():
        pytest.fail("the offline wheelhouse is missing: run scripts/setup (scripts/test does)")
    tmp = tmp_path_factory.mktemp("e2e")
    subprocess.run(
        [sys.executable, "build.py", "--out", str(tmp / "build")], cwd=ROOT, check=True, timeout=300
    )
    broker = Mosquitto(tmp / "mqtt")
    broker.start()
    subscriber = MqttSubscriber(broker, ["#"])
    sockets = Path(tempfile.mkdtemp(prefix="gg-", dir="/tmp"))
    agent_socket = str(sockets / "agent.sock")
    update = {
        AGENT: {"MERGE": {"UnixSocketName": agent_socket}},
        INFERENCE: {
            "MERGE": {
                "AgentSocket": agent_socket,
                "ImageName": "chelsea.jpg",
                "InferenceInterval": "0.5",
                "StatusInterval": "1",
            }
        },
    }
    root = tmp / "gg"
    log = tmp / "gglocal.log"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gglocal",
                "deploy",
                str(tmp / "build"),
                "--root",
                str(root),
                "--mqtt",
                broker.address,
                "--thing-name",
                "e2e-thing",
                "--only",
                INFERENCE,
                "--update-config",
                json.dumps(update),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deployment = Deployment(root, broker, subscriber, process, log)
    try:
        deployment.wait(on_topic(RESULTS, 1), INSTALL_TIMEOUT, "the first result")
        yield deployment
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        subscriber.close()
        broker.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def test_the_cat_image_arrives_at_the_broker_with_a_cat_class_first(deployment: Deployment) -> None:
    result = deployment.results()[0]
    assert result["inference-type"] == "image-classification"
    assert Path(result["source"]).name == "chelsea.jpg"
    labels = [r["Label"] for r in result["inference-results"]]
    assert labels[0] in CAT_LABELS and 1 <= len(labels) <= 5
    assert all(float(r["Score"]) >= 0.3 for r in result["inference-results"])
    status = deployment.gglocal("status", "--json").stdout
    assert '"RUNNING"' in status


def test_health_and_metrics_arrive_on_the_status_topic_with_real_numbers(deployment: Deployment) -> None:
    topic = "edgeclassifier/status/e2e-thing"
    seen = deployment.wait(on_topic(topic, 2), 30, "two status messages")
    status = [json.loads(m.payload) for m in seen if m.topic == topic][-1]
    assert status["state"] == "RUNNING"
    assert status["model"]["name"] == "efficientnet-lite0" and len(status["model"]["sha256"]) == 64
    assert 0.5 < status["fps"] < 3  # one frame every 0.5 s
    assert 0 < status["latency-ms"]["predict"]["p50"] <= status["latency-ms"]["predict"]["p99"]
    assert status["counters"]["classified"] >= 2 and status["counters"]["model_loads"] == 1
    assert status["process"]["rss-mb"] > 20


def test_every_result_published_while_the_broker_is_down_arrives_after_it_returns(
    deployment: Deployment,
) -> None:
    before = len(deployment.results())
    deployment.wait(on_topic(RESULTS, before + 2), 30, "results before the outage")
    deployment.broker.stop()
    time.sleep(4)  # the component keeps publishing: 0.5 s interval, into the core's outbox
    deployment.broker.start()
    seen = deployment.wait(on_topic(RESULTS, before + 12), 60, "results after the outage")
    frame_ids = [json.loads(m.payload)["frame-id"] for m in seen if m.topic == RESULTS]
    unique = sorted(set(frame_ids))
    assert unique == list(range(unique[0], unique[-1] + 1)), f"frames lost across the outage: {frame_ids}"


def test_a_configuration_update_takes_effect_without_a_restart(deployment: Deployment) -> None:
    start = len(deployment.subscriber.messages)
    deployment.configure(
        {
            "PublishResultsOnTopic": "edgeclassifier/status/e2e-results",
            "ScoreThreshold": "0.99",
            "InferenceInterval": "0.2",
        }
    )
    seen = deployment.wait(
        on_topic("edgeclassifier/status/e2e-results", 5, start), 30, "results on the new topic"
    )
    moved = [json.loads(m.payload) for m in seen[start:] if m.topic == "edgeclassifier/status/e2e-results"]
    assert all(r["inference-results"] == [] for r in moved[1:])  # nothing scores 0.99 on chelsea
    assert "Top 5 predictions with score 0.99" in moved[-1]["inference-description"]
    stamps = [time.mktime(time.strptime(r["timestamp"][:19], "%Y-%m-%d %H:%M:%S")) for r in moved]
    assert stamps[-1] - stamps[0] <= 4  # five frames 0.2 s apart, not 0.5 s
    log = deployment.component_log()
    assert "configuration applied" in log
    assert log.count("watching the component configuration for updates") == 1  # one process start, no restart
    assert json.loads(deployment.gglocal("status", "--json").stdout)[INFERENCE]["errors"] == 0
    deployment.configure(
        {"PublishResultsOnTopic": RESULTS, "ScoreThreshold": "0.3", "InferenceInterval": "0.5"}
    )


def test_a_topic_outside_the_access_control_fails_the_deployment_and_results_stay(
    deployment: Deployment,
) -> None:
    """PublishResultsOnTopic alone, accessControl still naming the old topic: the Java nucleus asks the
    component, which refuses, so the deployment FAILS with the reason and no result is lost meanwhile."""
    start = len(deployment.subscriber.messages)
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "gglocal",
            "config",
            "--component",
            INFERENCE,
            "--root",
            str(deployment.root),
            "--merge",
            json.dumps({"PublishResultsOnTopic": "not/allowed"}),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "not allowed by this configuration's accessControl" in refused.stderr
    deployment.wait(on_topic(RESULTS, 3, start), 30, "results on the old topic after the refusal")
    assert not any(m.topic == "not/allowed" for m in deployment.subscriber.messages)


def test_a_model_swap_and_batch_change_through_the_core_under_load_lose_no_frame(
    deployment: Deployment,
) -> None:
    """SubscribeToConfigurationUpdate -> the INT8 package replaces FP32 and BatchSize goes to 2 while frames
    stream every 0.1 s; every frame id in between reaches the broker, the model changes once."""
    int8 = (
        deployment.root
        / "packages/artifacts-unarchived/edgeclassifier.Model.EfficientNetLite0/1.0.0"
        / "edgeclassifier.Model.EfficientNetLite0/efficientnet-lite0-int8"
    )
    assert (int8 / "manifest.json").is_file()
    deployment.configure({"InferenceInterval": "0.1"})
    start = len(deployment.subscriber.messages)
    deployment.wait(on_topic(RESULTS, 5, start), 30, "results at the shorter interval")
    deployment.configure({"ModelPath": str(int8), "BatchSize": "2"})
    deployment.wait(
        lambda messages: any(
            json.loads(m.payload)["model"]["name"] == "efficientnet-lite0-int8"
            for m in messages[start:]
            if m.topic == RESULTS
        ),
        60,
        "results from the INT8 model",
    )
    swapped = len(deployment.subscriber.messages)
    deployment.wait(on_topic(RESULTS, 6, swapped), 30, "more results after the swap")
    results = deployment.results(since=start)
    ids = [r["frame-id"] for r in results]
    assert ids == list(range(ids[0], ids[0] + len(ids))), f"frames lost or repeated: {ids}"
    names = [r["model"]["name"] for r in results]
    first_int8 = names.index("efficientnet-lite0-int8")
    assert set(names[:first_int8]) == {"efficientnet-lite0"} and set(names[first_int8:]) == {names[-1]}
    assert all(r["inference-results"][0]["Label"] in CAT_LABELS for r in results)
    log = deployment.component_log()
    assert "switched from model efficientnet-lite0 to efficientnet-lite0-int8" in log
    assert log.count("watching the component configuration for updates") == 1  # no restart
    deployment.configure({"ModelPath": "", "BatchSize": "1", "InferenceInterval": "0.5"})


def test_a_frozen_agent_for_three_times_errored_after_is_ridden_out_without_a_restart(
    deployment: Deployment,
) -> None:
    """The agent is frozen (SIGSTOP) for three times ErroredAfterSeconds: Predict calls time out, the
    component keeps trying and says so on its status topic, never reports ERRORED (the nucleus would
    restart it, BROKEN at the third), and once the agent runs again (SIGCONT) results resume."""
    pids = re.findall(rf"{re.escape(AGENT)}: \w+ started \(pid (\d+)\)", deployment.log.read_text())
    assert pids, deployment.log.read_text()[-3000:]
    agent_pid = int(pids[-1])
    deployment.configure(
        {
            "ErroredAfterSeconds": "2",
            "RpcTimeoutSeconds": "1",
            "InferenceInterval": "0.2",
            "StatusInterval": "1",
        }
    )
    time.sleep(1.0)  # applied between frames
    start = len(deployment.subscriber.messages)
    os.kill(agent_pid, signal.SIGSTOP)
    try:
        time.sleep(6.5)
    finally:
        os.kill(agent_pid, signal.SIGCONT)
    deployment.wait(on_topic(RESULTS, 3, len(deployment.subscriber.messages)), 60, "results after the outage")
    states = [
        json.loads(m.payload)["state"] for m in deployment.subscriber.messages[start:] if m.topic == STATUS
    ]
    assert {"AGENT_TOO_SLOW", "WAITING_FOR_AGENT"} & set(states), states
    log = deployment.component_log()
    assert "ERRORED" not in log
    assert log.count("watching the component configuration for updates") == 1  # never restarted
    status = json.loads(deployment.gglocal("status", "--json").stdout)[INFERENCE]
    assert status["state"] == "RUNNING" and status["errors"] == 0
