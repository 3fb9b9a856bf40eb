"""Deploying tiny hand-written components: a library with a ZIP artifact, a publisher that uses awsiotsdk,
and a crashing component; variables, install-once, environment, restart-to-BROKEN, config updates, stop."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gglocal import ComponentState, Core, DeploymentError, RestartPolicy

if TYPE_CHECKING:
    from tests.mqtt_broker import Mosquitto, MqttSubscriber

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 30.0
PUB_SCRIPT = r"""
import json, os, signal, sys, threading
sys.path.insert(0, os.environ["LIB_DIR"])
import helper
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *args: stop.set())
keys = ["SVCUID", "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH",
        "AWS_IOT_THING_NAME", "AWS_REGION", "AWS_DEFAULT_REGION", "GG_ROOT_CA_PATH",
        "LIB_DIR", "TOPIC", "STEP_VAR"]
with open("env.json", "w") as handle:
    json.dump({"env": {k: os.environ.get(k) for k in keys}, "argv": sys.argv[1:], "cwd": os.getcwd()}, handle)
client = GreengrassCoreIPCClientV2()
updated = threading.Event()
client.subscribe_to_configuration_update(key_path=["Topic"], on_stream_event=lambda event: updated.set())
for index in range(3):
    body = json.dumps({"i": index, "helper": helper.VALUE})
    client.publish_to_iot_core(topic_name=os.environ["TOPIC"], qos="1", payload=body)
print("published 3 messages", flush=True)
open("ready", "w").close()
if updated.wait(60):
    topic = client.get_configuration(key_path=["Topic"]).value["Topic"]
    client.publish_to_iot_core(topic_name=topic, qos="1", payload=b"after-update")
stop.wait(120)
open("stopped", "w").write("sigterm")
client.close()
"""

PUB_RECIPE = f"""
RecipeFormatVersion: "2020-01-25"
componentName: com.example.Pub
ComponentVersion: 1.0.0
ComponentConfiguration:
  DefaultConfiguration:
    Topic: gglocal/test/out
    accessControl:
      aws.greengrass.ipc.mqttproxy:
        com.example.Pub:mqttproxy:1:
          operations: ["aws.greengrass#PublishToIoTCore"]
          resources: ["gglocal/test/#"]
ComponentDependencies:
  com.example.Lib:
    VersionRequirement: ">=1.0.0 <2.0.0"
Manifests:
  - Platform:
      os: /linux|darwin/
    Artifacts:
      - URI: s3://bucket/com.example.Pub/1.0.0/pub.py
    lifecycle:
      setEnv:
        LIB_DIR: "{{com.example.Lib:artifacts:decompressedPath}}/lib"
        TOPIC: "{{configuration:/Topic}}"
      install: "echo installed >> install.log"
      Run:
        Script: >-
          {sys.executable} -u {{artifacts:path}}/pub.py
          {{iot:thingName}} {{kernel:rootPath}} {{work:path}}
        Setenv:
          STEP_VAR: step-level
"""


def write_build(build: Path, *, extra_recipes: dict[str, dict[str, Any]] | None = None) -> Path:
    """A GDK-style build dir: recipes/ (JSON and YAML) and artifacts/<name>/<version>/."""
    recipes = build / "recipes"
    recipes.mkdir(parents=True)
    lib_dir = build / "artifacts" / "com.example.Lib" / "1.0.0"
    lib_dir.mkdir(parents=True)
    with zipfile.ZipFile(lib_dir / "lib.zip", "w") as bundle:
        bundle.writestr("helper.py", "VALUE = 'from-zip'\n")
    digest = base64.b64encode(hashlib.sha256((lib_dir / "lib.zip").read_bytes()).digest()).decode()
    lib = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Lib",
        "ComponentVersion": "1.0.0",
        "Manifests": [
            {
                "Platform": {"os": "*"},
                "Artifacts": [
                    {"URI": "s3://b/lib.zip", "Unarchive": "ZIP", "Digest": digest, "Algorithm": "SHA-256"}
                ],
                "Lifecycle": {"Install": "test -f {artifacts:decompressedPath}/lib/helper.py"},
            }
        ],
    }
    (recipes / "com.example.Lib-1.0.0.json").write_text(json.dumps(lib))
    pub_dir = build / "artifacts" / "com.example.Pub" / "1.0.0"
    pub_dir.mkdir(parents=True)
    (pub_dir / "pub.py").write_text(PUB_SCRIPT)
    (recipes / "com.example.Pub-1.0.0.yaml").write_text(PUB_RECIPE)
    for name, doc in (extra_recipes or {}).items():
        (recipes / f"{name}.json").write_text(json.dumps(doc))
    return build


CRASH = {
    "ComponentName": "com.example.Crash",
    "ComponentVersion": "0.1.0",
    "Manifests": [
        {
            "Lifecycle": {
                "Install": "echo i >> installs.log",
                "Run": "echo run >> runs.log; echo crashing >&2; exit 3",
            }
        }
    ],
}


def fast_policy() -> RestartPolicy:
    return RestartPolicy(max_errors=3, base_delay_s=0.1, max_delay_s=0.2, grace_s=5.0)


def wait_for_file(path: Path, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()


def test_deploy_runs_components_with_variables_env_restarts_and_stop(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Callable[[list[str]], MqttSubscriber]
) -> None:
    build = write_build(tmp_path / "build", extra_recipes={"crash": CRASH})
    subscriber = mqtt_subscriber(["gglocal/test/#"])
    root = tmp_path / "root"
    core = Core(
        root,
        mqtt=mosquitto.address,
        thing_name="test-thing",
        region="eu-west-1",
        restart_policy=fast_policy(),
    )
    try:
        names = core.deploy(build)
        assert names.index("com.example.Lib") < names.index("com.example.Pub")
        work = root / "work" / "com.example.Pub"
        assert wait_for_file(work / "ready"), (root / "logs" / "com.example.Pub.log").read_text()
        assert core.state("com.example.Lib") == ComponentState.FINISHED
        assert core.state("com.example.Pub") == ComponentState.RUNNING

        received = subscriber.wait_for(3, TIMEOUT)
        assert [json.loads(m.payload) for m in received[:3]] == [
            {"i": i, "helper": "from-zip"} for i in range(3)
        ]
        assert {m.topic for m in received} == {"gglocal/test/out"}

        seen = json.loads((work / "env.json").read_text())
        env = seen["env"]
        assert len(env["SVCUID"]) == 16 and env["SVCUID"].isalpha() and env["SVCUID"].isupper()
        assert env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] == str(core.ipc.socket_path)
        assert env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"] == str(core.ipc.socket_path)
        assert (env["AWS_IOT_THING_NAME"], env["AWS_REGION"], env["AWS_DEFAULT_REGION"]) == (
            "test-thing",
            "eu-west-1",
            "eu-west-1",
        )
        assert env["GG_ROOT_CA_PATH"] == str(root / "rootCA.pem")
        assert env["LIB_DIR"] == str(root / "packages/artifacts-unarchived/com.example.Lib/1.0.0/lib")
        assert (env["TOPIC"], env["STEP_VAR"]) == ("gglocal/test/out", "step-level")
        assert seen["argv"] == ["test-thing", str(root), str(work)]
        assert seen["cwd"] == str(work)
        assert "published 3 messages" in (root / "logs" / "com.example.Pub.log").read_text()

        changed = core.update_config("com.example.Pub", {"Topic": "gglocal/test/updated"})
        assert changed == ["/Topic"]

        def restarted(messages: list[Any]) -> bool:  # TOPIC is rendered from Topic: the nucleus restarts Pub
            new = [m for m in messages if m.topic == "gglocal/test/updated" and m.payload.startswith(b'{"i"')]
            return len(new) >= 3

        assert restarted(subscriber.wait_until(restarted, TIMEOUT))
        assert core.runner("com.example.Pub").restarts == 1
        assert json.loads((work / "env.json").read_text())["env"]["TOPIC"] == "gglocal/test/updated"

        assert core.wait_for_state("com.example.Crash", {ComponentState.BROKEN}, TIMEOUT)
        crash_work = root / "work" / "com.example.Crash"
        assert (crash_work / "runs.log").read_text().count("run") == 3
        assert (crash_work / "installs.log").read_text().count("i") == 1
        assert "crashing" in (root / "logs" / "com.example.Crash.log").read_text()
        assert core.states()["com.example.Crash"]["errors"] == 3
    finally:
        core.stop()
    assert (root / "work" / "com.example.Pub" / "stopped").read_text() == "sigterm"
    assert (root / "work" / "com.example.Pub" / "install.log").read_text().count("installed") == 1
    assert core.states()["com.example.Pub"]["state"] == "FINISHED"
    assert core.states()["com.example.Crash"]["state"] == "BROKEN"


def test_a_public_dependency_fails_the_deployment_unless_only_excludes_it(tmp_path: Path) -> None:
    edge = {
        "ComponentName": "com.example.NeedsEdgeManager",
        "ComponentVersion": "1.0.0",
        "ComponentDependencies": {"aws.greengrass.SageMakerEdgeManager": {"VersionRequirement": ">=1.0.0"}},
        "Manifests": [{"Lifecycle": {"Run": "true"}}],
    }
    build = write_build(tmp_path / "build", extra_recipes={"edge": edge})
    core = Core(tmp_path / "root", stdout=open(os.devnull, "w"))  # noqa: SIM115 - closed below
    try:
        with pytest.raises(
            DeploymentError, match=r"aws\.greengrass\.SageMakerEdgeManager.*cannot be run locally"
        ):
            core.deploy(build)
        assert core.states() == {}
        names = core.deploy(build, only=["com.example.Lib"])
        assert names == ["com.example.Lib"]
        assert core.wait_for_state("com.example.Lib", {ComponentState.FINISHED}, TIMEOUT)
    finally:
        core.stop()
        assert core._stdout is not None
        core._stdout.close()


def test_startup_components_and_update_state(tmp_path: Path, ipc_client: Callable[[Any, str], Any]) -> None:
    build = tmp_path / "build"
    (build / "recipes").mkdir(parents=True)
    service = {
        "ComponentName": "com.example.Service",
        "ComponentVersion": "1.0.0",
        "Manifests": [
            {
                "Lifecycle": {
                    "Startup": "sleep 60 > /dev/null 2>&1 &",
                    "Shutdown": "echo shutdown >> shutdown.log",
                }
            }
        ],
    }
    (build / "recipes" / "service.json").write_text(json.dumps(service))
    core = Core(tmp_path / "root", restart_policy=fast_policy())
    try:
        core.deploy(recipe_dir=build / "recipes")
        assert core.wait_for_state("com.example.Service", {ComponentState.RUNNING}, TIMEOUT)
        assert core.ipc is not None
        client = ipc_client(core.ipc, core.runner("com.example.Service").spec.env["SVCUID"])
        client.update_state_async(state="ERRORED").result(TIMEOUT)
        assert core.wait_for_state("com.example.Service", {ComponentState.ERRORED}, TIMEOUT)
        assert core.wait_for_state("com.example.Service", {ComponentState.RUNNING}, TIMEOUT)
    finally:
        core.stop()
    assert (tmp_path / "root/work/com.example.Service/shutdown.log").read_text() == "shutdown\n"
