"""The built Greengrass components, deployed unchanged on the local stand-in of each core, end to end.

build.py -> `python -m gglocal deploy --nucleus classic|lite` (a subprocess running each component's real
install and run steps: the installer checks and unpacks the zips, a pinned virtualenv from the offline
wheelhouse that scripts/setup fills, OpenCV included; then the agent on its default socket and the inference
component) -> IPC PublishToIoTCore -> a real mosquitto on a free port -> a paho subscriber. A camera is
ffmpeg streaming a clip of the cat to the test RTSP relay on 127.0.0.1.

One deployment per core serves the module; each test changes what it needs with local configuration-only
deployments (`gglocal config`), as a user would, and puts it back. Where the cores differ the test says so:
the Java nucleus asks the component to validate a configuration first (a refused one fails the deployment)
and applies it live; nucleus lite validates nothing and applies it live too, one event per key, so the
component refuses a bad one on arrival, without a restart. A deployment from the cloud (`gglocal config
--cloud`) restarts the component on lite: the one test that uses it checks that nothing is lost.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_client import AgentClient, ClientOptions
from tests.mqtt_broker import Mosquitto, MqttSubscriber, Received

from ..helpers import ROOT
from ..rtsp_server import RtspRelay
from ..video_streams import RtspPublisher, make_clip

pytestmark = pytest.mark.e2e

INFERENCE = "edgeclassifier.ImageClassification"
AGENT = "edgeclassifier.Agent"
MODEL = "edgeclassifier.Model.EfficientNetLite0"
RESULTS = "gg/sageMakerEdgeManager/image-classification"
STATUS = "edgeclassifier/status/e2e-thing"
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}
INSTALL_TIMEOUT = 600.0
WHEELHOUSE = ROOT / ".wheelhouse"
STARTED = "watching the component configuration for updates"  # logged once per process start
BASE = {"ImageName": "chelsea.jpg", "InferenceInterval": "0.5", "StatusInterval": "1"}


@dataclass
class Deployment:
    nucleus: str
    root: Path
    broker: Mosquitto
    subscriber: MqttSubscriber
    process: subprocess.Popen[bytes]
    log: Path
    builds: dict[str, Path]
    camera: RtspPublisher

    @property
    def lite(self) -> bool:
        return self.nucleus == "lite"

    def gglocal(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gglocal", *args, "--root", str(self.root)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def configure(
        self, merge: dict[str, Any], check: bool = True, *, cloud: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """A configuration-only deployment merging these keys into the inference component's, local (applied
        live on both cores) or ``cloud`` (lite restarts the component for it: then this returns once the new
        process runs, a RUNNING status from it)."""
        return self._deploy_config(["--merge", json.dumps(merge)], check, cloud)

    def reset(self, *pointers: str) -> subprocess.CompletedProcess[str]:
        """A local configuration-only deployment resetting these keys to the recipe's defaults (lite deletes
        them and tells the component nothing: it learns of it at the next update event)."""
        return self._deploy_config([arg for pointer in pointers for arg in ("--reset", pointer)], True, False)

    def _deploy_config(self, args: list[str], check: bool, cloud: bool) -> subprocess.CompletedProcess[str]:
        starts = self.starts()
        options = ["--cloud"] if cloud else []
        answer = self.gglocal("config", "--component", INFERENCE, *args, *options, check=check)
        if self.restarts_for(cloud) and answer.returncode == 0 and json.loads(answer.stdout or "[]"):
            deadline = time.monotonic() + 60
            while self.starts() == starts:
                assert time.monotonic() < deadline, (
                    f"lite did not restart the component:\n{self.component_log()}"
                )
                time.sleep(0.1)
            mark = self.mark()
            self.wait(
                lambda messages: any(
                    m.topic == STATUS and json.loads(m.payload)["state"] == "RUNNING" for m in messages[mark:]
                ),
                60,
                "the restarted component running",
            )
        return answer

    def restarts_for(self, cloud: bool) -> bool:
        """Whether a configuration deployment restarts the component: only one from the cloud, on lite."""
        return self.lite and cloud

    def component_log(self) -> str:
        path = self.root / "logs" / f"{INFERENCE}.log"
        return path.read_text() if path.exists() else ""

    def starts(self) -> int:
        return self.component_log().count(STARTED)

    def state(self, name: str = INFERENCE) -> dict[str, Any]:
        return dict(json.loads(self.gglocal("status", "--json").stdout)[name])

    def results(self, topic: str = RESULTS, since: int = 0) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.subscriber.messages[since:] if m.topic == topic]

    def statuses(self, since: int = 0) -> list[dict[str, Any]]:
        return self.results(STATUS, since)

    def mark(self) -> int:
        return len(self.subscriber.messages)

    def wait(self, predicate: Callable[[list[Received]], bool], timeout: float, what: str) -> list[Received]:
        messages = self.subscriber.wait_until(predicate, timeout)
        if not predicate(messages):
            raise AssertionError(
                f"{self.nucleus}: timed out waiting for {what}; component log:\n"
                f"{self.component_log()[-4000:]}\nstand-in log:\n{self.log.read_text()[-4000:]}"
            )
        return messages

    def wait_results(self, count: int, since: int, timeout: float = 60, what: str = "results") -> None:
        self.wait(on_topic(RESULTS, count, since), timeout, what)


def on_topic(topic: str, count: int, since: int = 0) -> Callable[[list[Received]], bool]:
    return lambda messages: sum(m.topic == topic for m in messages[since:]) >= count


def contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


def runs(ids: list[int]) -> list[list[int]]:
    """Frame ids split where a new process started counting again from 1."""
    split: list[list[int]] = [[]]
    for frame_id in ids:
        if split[-1] and frame_id <= split[-1][-1]:
            split.append([])
        split[-1].append(frame_id)
    return split


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The build as it is (1.0.0), and a 1.0.1 of it for the model component upgrade."""
    if not (WHEELHOUSE / ".requirements.sha256").exists():
        pytest.fail("the offline wheelhouse is missing: run scripts/setup (scripts/test does)")
    tmp = tmp_path_factory.mktemp("builds")
    made = {}
    for version in ("1.0.0", "1.0.1"):
        out = tmp / version
        command = [sys.executable, "build.py", "--out", str(out), "--version", version]
        subprocess.run(command, cwd=ROOT, check=True, timeout=300, stdout=subprocess.DEVNULL)
        made[version] = out
    return made


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspPublisher]:
    """ffmpeg streaming the cat clip to an RTSP relay, every frame a key frame (a player that joins
    mid-stream gets pictures at once)."""
    clip = make_clip(tmp_path_factory.mktemp("camera") / "chelsea.mp4")
    relay = RtspRelay()
    relay.start()
    publisher = RtspPublisher(clip, relay, gop=1)
    publisher.start()
    try:
        yield publisher
    finally:
        publisher.stop()
        relay.stop()


@pytest.fixture(scope="module", params=["classic", "lite"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    builds: dict[str, Path],
    camera: RtspPublisher,
) -> Iterator[Deployment]:
    nucleus = request.param
    tmp = tmp_path_factory.mktemp(f"e2e-{nucleus}")
    broker = Mosquitto(tmp / "mqtt")
    broker.start()
    subscriber = MqttSubscriber(broker, ["#"])
    root, log = tmp / "gg", tmp / "gglocal.log"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}
    command = [
        *(sys.executable, "-m", "gglocal", "deploy", str(builds["1.0.0"]), "--root", str(root)),
        *("--nucleus", nucleus, "--mqtt", broker.address, "--thing-name", "e2e-thing", "--only", INFERENCE),
        *("--update-config", json.dumps({INFERENCE: {"MERGE": BASE}})),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deployment = Deployment(nucleus, root, broker, subscriber, process, log, builds, camera)
    try:
        deployment.wait(on_topic(RESULTS, 1), INSTALL_TIMEOUT, "the first result")
        yield deployment
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        subscriber.close()
        broker.stop()


GOOD = {
    **BASE,
    "TopK": "5",
    "ScoreThreshold": "0.3",
    "PublishResultsOnTopic": RESULTS,
    "ModelVariant": "fp32",
    "BatchSize": "1",
    "ErroredAfterSeconds": "120",
    "RpcTimeoutSeconds": "5",
    "Source": "",
}


@pytest.fixture(autouse=True)
def restored(deployment: Deployment) -> Iterator[None]:
    """Whatever a test changed (even one that failed half way), the next one starts from GOOD."""
    yield
    if deployment.process.poll() is None:
        deployment.reset("/TopKK")  # first: on lite the component learns of it from the next update's events
        deployment.configure(GOOD, check=False)


def test_the_cat_image_arrives_at_the_broker_with_a_cat_class_first(deployment: Deployment) -> None:
    result = deployment.results()[0]
    assert result["inference-type"] == "image-classification"
    assert Path(result["source"]).name == "chelsea.jpg"
    labels = [r["Label"] for r in result["inference-results"]]
    assert labels[0] in CAT_LABELS and 1 <= len(labels) <= 5
    assert all(float(r["Score"]) >= 0.3 for r in result["inference-results"])
    assert deployment.state()["state"] == "RUNNING"
    # the agent serves on its default socket in its own work folder, where the component finds it
    assert (deployment.root / "work" / AGENT / "agent.sock").is_socket()


def test_health_and_metrics_arrive_on_the_status_topic_with_real_numbers(deployment: Deployment) -> None:
    seen = deployment.wait(on_topic(STATUS, 2), 30, "two status messages")
    status = [json.loads(m.payload) for m in seen if m.topic == STATUS][-1]
    assert status["state"] == "RUNNING"
    assert status["model"]["name"] == "efficientnet-lite0" and len(status["model"]["sha256"]) == 64
    assert 0.5 < status["fps"] < 3  # one frame every 0.5 s
    assert 0 < status["latency-ms"]["predict"]["p50"] <= status["latency-ms"]["predict"]["p99"]
    assert status["counters"]["classified"] >= 2 and status["counters"]["model_loads"] == 1
    assert status["process"]["rss-mb"] > 20


def test_every_result_published_while_the_broker_is_down_arrives_after_it_returns(
    deployment: Deployment,
) -> None:
    before = deployment.mark()
    deployment.wait_results(2, before, 30, "results before the outage")
    deployment.broker.stop()
    # the component keeps classifying (0.5 s interval): the Java nucleus spools its results; nucleus lite
    # refuses them (ServiceError, nothing kept) and the component holds them and retries
    time.sleep(4)
    deployment.broker.start()
    deployment.wait_results(12, before, 60, "results after the outage")
    unique = sorted({r["frame-id"] for r in deployment.results(since=before)})
    missing = sorted(set(range(unique[0], unique[-1] + 1)) - set(unique))
    iot = json.loads(deployment.gglocal("status", "--json", "--full").stdout)["iot"]
    # lite answers a publish before the broker acknowledges it and starts each connection clean: a result
    # written the instant the broker went away is lost by the core itself (counted), never by the component
    lost_by_core = iot.get("lost_in_flight", 0) if deployment.lite else 0
    assert len(missing) <= lost_by_core, f"frames lost across the outage: {missing} ({iot})"
    if deployment.lite:
        assert iot["spooling"] is False and iot["refused_not_connected"] > 0, iot
    else:
        assert iot["spooling"] is True and iot["queue"]["refused"] == 0, iot


@pytest.mark.parametrize("cloud", [False, True], ids=["local", "cloud"])
def test_a_configuration_update_takes_effect_and_no_accepted_result_is_lost(
    deployment: Deployment, cloud: bool
) -> None:
    """A local deployment is applied live on both cores, as one from the cloud is on the Java nucleus. From
    the cloud, nucleus lite restarts the component instead; what it had classified before the restart still
    reaches the broker (frame ids of each run contiguous, the stopped process's counters balanced)."""
    starts, start = deployment.starts(), deployment.mark()
    deployment.configure({"ScoreThreshold": "0.99", "InferenceInterval": "0.2"}, cloud=cloud)
    deployment.wait(
        lambda messages: any(
            "score 0.99" in json.loads(m.payload)["inference-description"]
            for m in messages[start:]
            if m.topic == RESULTS
        ),
        60,
        "results under the new threshold",
    )
    changed = next(
        i for i, r in enumerate(deployment.results(since=start)) if "0.99" in r["inference-description"]
    )
    deployment.wait_results(changed + 5, start, 30, "five results at the new interval")
    moved = deployment.results(since=start)[changed:]
    assert all(r["inference-results"] == [] for r in moved)  # nothing scores 0.99 on chelsea
    stamps = [time.mktime(time.strptime(r["timestamp"][:19], "%Y-%m-%d %H:%M:%S")) for r in moved[:5]]
    assert stamps[-1] - stamps[0] <= 4  # five frames 0.2 s apart, not 0.5 s
    ids = [r["frame-id"] for r in deployment.results(since=start)]
    assert all(contiguous(run) for run in runs(ids)), ids
    if deployment.restarts_for(cloud):
        assert deployment.starts() == starts + 1
        # the process the deployment stopped had published, or kept for the next one, all it classified
        stopped = [s for s in deployment.statuses(since=start) if s["state"] == "STOPPED"][-1]["counters"]
        assert stopped["classified"] == stopped["published"] + stopped["queued_results"], stopped
        assert stopped["dropped_results"] == 0 and stopped["refused_results"] == 0, stopped
    else:
        assert deployment.starts() == starts and "configuration applied" in deployment.component_log()
        assert contiguous(ids), ids  # one process throughout
    assert deployment.state()["errors"] == 0
    deployment.configure({"ScoreThreshold": "0.3", "InferenceInterval": "0.5"})


def test_a_bad_merge_is_refused_with_its_reason_and_results_keep_the_old_configuration(
    deployment: Deployment,
) -> None:
    """Java nucleus: the component's validation fails the deployment with the reason. Nucleus lite stores
    it anyway: the component refuses it on arrival, keeps the last good configuration and says why, and goes
    on in the same process."""
    starts, start = deployment.starts(), deployment.mark()
    answer = deployment.configure({"TopK": "0", "InferenceInterval": "0.2"}, check=False)
    if deployment.lite:
        assert answer.returncode == 0, answer.stderr
        deployment.wait(
            lambda messages: any(
                json.loads(m.payload)["configuration"]["state"] == "REFUSED"
                and "TopK" in json.loads(m.payload)["configuration"]["reason"]
                for m in messages[start:]
                if m.topic == STATUS
            ),
            60,
            "a status saying the configuration was refused",
        )
    else:
        assert answer.returncode == 2 and "TopK='0'" in answer.stderr, answer.stderr
    mark = deployment.mark()
    deployment.wait_results(3, mark, 30, "results under the old configuration")
    after = deployment.results(since=mark)
    assert all(len(r["inference-results"]) >= 1 for r in after)  # TopK 5 and threshold 0.3 still hold
    stamps = [time.mktime(time.strptime(r["timestamp"][:19], "%Y-%m-%d %H:%M:%S")) for r in after[:3]]
    assert stamps[-1] - stamps[0] >= 0.9  # still 0.5 s apart, not 0.2
    assert deployment.state()["state"] == "RUNNING"
    assert deployment.starts() == starts  # refused live, not restarted
    if deployment.lite:
        deployment.configure({"TopK": "5", "InferenceInterval": "0.5"})


def test_a_misspelt_key_is_refused_at_deployment_or_reported(deployment: Deployment) -> None:
    """Java nucleus: refused at deployment, naming the valid keys. Nucleus lite cannot refuse it: the
    component ignores it, applies the rest and reports it on its status topic, without a restart."""
    starts, start = deployment.starts(), deployment.mark()
    answer = deployment.configure({"TopKK": "3"}, check=False)
    if deployment.lite:
        assert answer.returncode == 0
        deployment.wait(
            lambda messages: any(
                json.loads(m.payload)["configuration"]["ignored-keys"] == ["TopKK"]
                for m in messages[start:]
                if m.topic == STATUS
            ),
            60,
            "the ignored key on the status topic",
        )
        assert "unknown configuration key(s) TopKK ignored" in deployment.component_log()
        assert deployment.starts() == starts
        deployment.reset("/TopKK")
    else:
        assert answer.returncode == 2
        assert "unknown configuration key(s) TopKK; valid keys:" in answer.stderr
    deployment.wait_results(2, deployment.mark(), 30, "results after the misspelt key")


def test_a_topic_outside_the_access_control_is_refused_and_results_stay(deployment: Deployment) -> None:
    """PublishResultsOnTopic alone, accessControl still naming the old topic: refused with the reason (at
    deployment on the Java nucleus, on arrival on lite, where the process goes on); no result is dropped
    meanwhile."""
    starts, start = deployment.starts(), deployment.mark()
    answer = deployment.configure({"PublishResultsOnTopic": "not/allowed"}, check=False)
    if deployment.lite:
        deployment.wait(
            lambda messages: any(
                "accessControl" in (json.loads(m.payload)["configuration"]["reason"] or "")
                for m in messages[start:]
                if m.topic == STATUS
            ),
            60,
            "the refusal on the status topic",
        )
    else:
        assert answer.returncode == 2 and "not allowed by this configuration's accessControl" in answer.stderr
    mark = deployment.mark()
    deployment.wait_results(3, mark, 30, "results on the old topic after the refusal")
    assert not any(m.topic == "not/allowed" for m in deployment.subscriber.messages)
    assert deployment.starts() == starts
    if deployment.lite:
        deployment.configure({"PublishResultsOnTopic": RESULTS})


def test_a_model_variant_and_batch_change_under_load_lose_no_frame(deployment: Deployment) -> None:
    """ModelVariant int8 replaces fp32 and BatchSize goes to 2 while frames come every 0.1 s: every frame id
    reaches the broker, in one process. On lite the two keys arrive as two events, ModelVariant written
    first: the component may see int8 with BatchSize 1 for a moment (valid, applied), then BatchSize 2."""
    deployment.configure({"InferenceInterval": "0.1"})
    starts, start = deployment.starts(), deployment.mark()
    deployment.wait_results(5, start, 30, "results at the shorter interval")
    deployment.configure({"ModelVariant": "int8", "BatchSize": "2"})
    deployment.wait(
        lambda messages: any(
            json.loads(m.payload)["model"]["name"] == "efficientnet-lite0-int8"
            for m in messages[start:]
            if m.topic == RESULTS
        ),
        60,
        "results from the INT8 model",
    )
    deployment.wait_results(6, deployment.mark(), 30, "more results after the swap")
    results = deployment.results(since=start)
    ids = [r["frame-id"] for r in results]
    assert contiguous(ids), f"frames lost or repeated: {ids}"
    names = [r["model"]["name"] for r in results]
    first_int8 = names.index("efficientnet-lite0-int8")
    assert set(names[:first_int8]) == {"efficientnet-lite0"} and set(names[first_int8:]) == {names[-1]}
    assert all(r["inference-results"][0]["Label"] in CAT_LABELS for r in results)
    log = deployment.component_log()
    assert "switched from model efficientnet-lite0 to efficientnet-lite0-int8" in log
    assert deployment.starts() == starts
    assert deployment.statuses()[-1]["configuration"]["state"] == "APPLIED", deployment.statuses()[-1]
    deployment.configure({"ModelVariant": "fp32", "BatchSize": "1", "InferenceInterval": "0.5"})


def test_a_frozen_agent_for_three_times_errored_after_is_ridden_out_without_a_restart(
    deployment: Deployment,
) -> None:
    """The agent is frozen (SIGSTOP) for three times ErroredAfterSeconds: Predict calls time out, the
    component keeps trying and says so on its status topic, never reports ERRORED (the Java nucleus would
    restart it, BROKEN at the third), and once the agent runs again (SIGCONT) every frame is published."""
    pids = re.findall(rf"{re.escape(AGENT)}: \w+ started \(pid (\d+)\)", deployment.log.read_text())
    assert pids, deployment.log.read_text()[-3000:]
    agent_pid = int(pids[-1])
    deployment.configure({"ErroredAfterSeconds": "2", "RpcTimeoutSeconds": "1", "InferenceInterval": "0.2"})
    deployment.wait_results(2, deployment.mark(), 30, "results before the outage")
    starts, start = deployment.starts(), deployment.mark()
    os.kill(agent_pid, signal.SIGSTOP)
    try:
        time.sleep(6.5)
    finally:
        os.kill(agent_pid, signal.SIGCONT)
    deployment.wait_results(5, deployment.mark(), 60, "results after the outage")
    states = {s["state"] for s in deployment.statuses(since=start)}
    assert {"AGENT_TOO_SLOW", "WAITING_FOR_AGENT"} & states, states
    ids = [r["frame-id"] for r in deployment.results(since=start)]
    assert contiguous(ids), f"frames lost across the agent outage: {ids}"
    assert deployment.starts() == starts  # never restarted
    state = deployment.state()
    assert state["state"] == "RUNNING" and state["errors"] == 0
    deployment.configure({"ErroredAfterSeconds": "120", "RpcTimeoutSeconds": "5", "InferenceInterval": "0.5"})


def test_an_rtsp_camera_is_classified_and_a_camera_outage_is_ridden_out(deployment: Deployment) -> None:
    """Source = the RTSP camera (OpenCV from the component's own install). The camera goes away for three
    times ErroredAfterSeconds and comes back: RUNNING throughout, it reconnects, and every frame it took
    after the outage is published (frame ids rising, none classified and then lost)."""
    camera = deployment.camera
    deployment.configure({"Source": camera.url, "InferenceInterval": "0.2", "ErroredAfterSeconds": "2"})
    start = deployment.mark()
    deployment.wait(
        lambda messages: (
            sum(
                m.topic == RESULTS and json.loads(m.payload)["source"].startswith("rtsp://")
                for m in messages[start:]
            )
            >= 3
        ),
        90,
        "results from the camera",
    )
    from_camera = [r for r in deployment.results(since=start) if r["source"].startswith("rtsp://")]
    assert all(r["inference-results"][0]["Label"] in CAT_LABELS for r in from_camera[-3:])
    starts, outage = deployment.starts(), deployment.mark()
    camera.stop()
    try:
        time.sleep(6.5)
    finally:
        camera.start()
    back = deployment.mark()
    deployment.wait_results(5, back, 90, "results after the camera came back")
    states = {s["state"] for s in deployment.statuses(since=outage)}
    assert "WAITING_FOR_SOURCE" in states, states
    assert deployment.starts() == starts  # never restarted
    ids = [r["frame-id"] for r in deployment.results(since=outage)]
    assert ids == sorted(set(ids)), ids
    deployment.wait(
        lambda messages: any(
            m.topic == STATUS and json.loads(m.payload)["state"] == "RUNNING" for m in messages[back:]
        ),
        30,
        "a RUNNING status after the outage",
    )
    last = [s for s in deployment.statuses(since=back) if s["state"] == "RUNNING"][-1]
    assert last["counters"]["source_reconnects"] >= 1, last
    state = deployment.state()
    assert state["state"] == "RUNNING" and state["errors"] == 0
    deployment.gglocal(
        "config", "--component", INFERENCE, "--reset", "/Source", "--reset", "/ErroredAfterSeconds"
    )
    deployment.configure({"InferenceInterval": "0.5"})


def test_a_model_component_upgrade_is_picked_up_with_no_exit(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model component 1.0.1 (a new version folder) deployed into the running core: the inference component,
    HARD on it, is restarted by the core and loads the package from the new folder; the agent still serves
    the old one under the same name, which the component reclaims instead of exiting, and it holds nothing
    else afterwards (measured on nucleus lite before: both names, 162 MB instead of 112)."""
    starts = deployment.starts()
    done = deployment.gglocal("deployment", str(deployment.builds["1.0.1"]), "--only", MODEL, check=False)
    assert done.returncode == 0, done.stderr
    assert deployment.state(MODEL)["version"] == "1.0.1"
    mark = deployment.mark()
    deployment.wait_results(3, mark, 90, "results after the upgrade")
    log = deployment.component_log()
    assert deployment.starts() == starts + 1
    assert re.search(r"model efficientnet-lite0 \S+ ready \(\S+/1\.0\.1/", log.split(STARTED)[-1]), log[
        -3000:
    ]
    assert "already serves" not in log
    state = deployment.state()
    assert state["state"] == "RUNNING" and state["errors"] == 0
    monkeypatch.setenv("EDGECLASSIFIER_GG_ROOT", str(deployment.root))  # as the component's recipe sets it
    with AgentClient(deployment.root / "work" / AGENT / "agent.sock", ClientOptions(timeout=5)) as client:
        assert [m.name for m in client.list_models()] == ["efficientnet-lite0"]


def test_stopping_the_core_ends_the_component_with_stopped_and_no_traceback(deployment: Deployment) -> None:
    start = deployment.mark()
    deployment.gglocal("stop")
    assert deployment.process.wait(60) == 0
    deployment.wait(on_topic(STATUS, 1, start), 10, "the last status")
    assert deployment.statuses(since=start)[-1]["state"] == "STOPPED"
    log = deployment.component_log()
    assert "Traceback" not in log and "stopped: {" in log.split(STARTED)[-1]
