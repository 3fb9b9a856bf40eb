"""``python -m gglocal`` end to end: deploy (stdout IoT Core), status, config, stop; a long root path."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from ..helpers import standin as running_standin

pytestmark = pytest.mark.integration

TIMEOUT = 30.0
ECHO_SCRIPT = r"""
import os, threading
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

client = GreengrassCoreIPCClientV2()
changed = threading.Event()
client.subscribe_to_configuration_update(on_stream_event=lambda event: changed.set())
while True:
    message = client.get_configuration(key_path=["Message"]).value["Message"]
    client.publish_to_iot_core(topic_name="cli/echo", qos="0", payload=message)
    changed.wait()
    changed.clear()
"""


def write_python_build(
    build: Path, name: str, script: str, configuration: dict[str, Any], manifest: dict[str, Any]
) -> None:
    """A build with one component that runs ``script`` (an artifact) with this python; ``manifest`` gives
    its Platform and the lifecycle key that runs it (as each core spells it)."""
    (build / "recipes").mkdir(parents=True)
    artifacts = build / "artifacts" / name / "1.0.0"
    artifacts.mkdir(parents=True)
    (artifacts / "script.py").write_text(script)
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": {"DefaultConfiguration": configuration},
        "Manifests": [
            {
                "Platform": manifest["Platform"],
                "Artifacts": [{"URI": "s3://b/script.py"}],
                "Lifecycle": {manifest["run"]: f"exec {sys.executable} -u {{artifacts:path}}/script.py"},
            }
        ],
    }
    (build / "recipes" / f"{name}.json").write_text(json.dumps(recipe))


def write_build(build: Path) -> None:
    """The echo component, as recipes were written for the Java nucleus only."""
    access = {"echo": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["cli/#"]}}
    configuration = {"Message": "default", "accessControl": {"aws.greengrass.ipc.mqttproxy": access}}
    write_python_build(
        build, "com.example.Echo", ECHO_SCRIPT, configuration, {"Platform": {"os": "linux"}, "run": "Run"}
    )


def gglocal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gglocal", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def read_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def next_message(lines: queue.Queue[str]) -> dict[str, Any]:
    while True:
        line = lines.get(timeout=TIMEOUT)
        if line.startswith("{"):
            return dict(json.loads(line))


def test_cli_deploy_status_config_stop(tmp_path: Path) -> None:
    build = tmp_path / "build"
    write_build(build)
    root = tmp_path / ("very-long-root-" * 6) / "gg"  # the sockets move to a short temp dir
    update = json.dumps({"com.example.Echo": {"MERGE": {"Message": "from-deployment"}}})
    stderr = (tmp_path / "stderr.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gglocal",
            "deploy",
            str(build),
            "--root",
            str(root),
            "--update-config",
            update,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        assert next_message(lines) == {
            "topic": "cli/echo",
            "qos": 0,
            "retain": False,
            "payload": "from-deployment",
        }

        status = gglocal("status", "--root", str(root))
        assert status.returncode == 0, status.stderr
        assert "Component Name: com.example.Echo" in status.stdout and "State: RUNNING" in status.stdout
        as_json = json.loads(gglocal("status", "--root", str(root), "--json").stdout)
        assert as_json["com.example.Echo"]["state"] == "RUNNING"

        changed = gglocal(
            "config", "--root", str(root), "--component", "com.example.Echo", "--merge", '{"Message": "x"}'
        )
        assert changed.returncode == 0, changed.stderr
        assert json.loads(changed.stdout) == ["/Message"]
        assert next_message(lines)["payload"] == "x"

        reset = gglocal(
            "config", "--root", str(root), "--component", "com.example.Echo", "--reset", "/Message"
        )
        assert reset.returncode == 0, reset.stderr
        assert next_message(lines)["payload"] == "default"

        unknown = gglocal("config", "--root", str(root), "--component", "nope", "--merge", "{}")
        assert unknown.returncode == 3 and "nope" in unknown.stderr

        second = gglocal("deploy", str(build), "--root", str(root))
        assert second.returncode == 2 and "another stand-in" in second.stderr

        assert gglocal("stop", "--root", str(root)).returncode == 0
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        reader.join(TIMEOUT)
        assert process.stdout is not None
        process.stdout.close()
        stderr.close()
    log = (root / "logs" / "greengrass.log").read_text()
    assert "com.example.Echo: RUNNING -> FINISHED" in log or "RUNNING -> STOPPING" in log
    assert not (root / "gglocal.json").exists()
    assert gglocal("status", "--root", str(root)).returncode == 3


def test_cli_deploy_fails_clearly_on_a_public_dependency(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    recipe = {
        "ComponentName": "com.example.Inference",
        "ComponentVersion": "1.0.0",
        "ComponentDependencies": {"aws.greengrass.Nucleus": {"VersionRequirement": ">=2.0.0 <3.0.0"}},
        "Manifests": [{"Lifecycle": {"Run": "true"}}],
    }
    (recipes / "r.json").write_text(json.dumps(recipe))
    result = gglocal("deploy", "--recipe-dir", str(recipes), "--root", str(tmp_path / "root"))
    assert result.returncode == 2
    assert "aws.greengrass.Nucleus" in result.stderr and "cannot be run locally" in result.stderr


VALIDATOR_SCRIPT = r"""
import threading
from awsiot.greengrasscoreipc import model
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

client = GreengrassCoreIPCClientV2()


def on_event(events):
    event = events.validate_configuration_update_event
    top_k = event.configuration.get("TopK")
    ok = top_k.isdigit() and 1 <= int(top_k) <= 10
    report = model.ConfigurationValidityReport(
        status="ACCEPTED" if ok else "REJECTED",
        deployment_id=event.deployment_id,
        message="" if ok else f"TopK must be 1 to 10, got {top_k!r}",
    )
    client.send_configuration_validity_report_async(configuration_validity_report=report)


try:
    client.subscribe_to_validate_configuration_updates(on_stream_event=on_event)
except model.ServiceError:  # nucleus lite offers no validation
    print("this core does not validate configuration", flush=True)
open("ready", "w").close()
threading.Event().wait()
"""


def write_validator_build(build: Path) -> None:
    manifest = {"Platform": {"os": "linux", "runtime": "*"}, "run": "run"}
    write_python_build(build, "com.example.Validator", VALIDATOR_SCRIPT, {"TopK": "5"}, manifest)


@contextlib.contextmanager
def standin(build: Path, root: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """The stand-in in the background until its Validator is ready (tests.helpers.standin)."""
    ready = root / "work" / "com.example.Validator" / "ready"
    with running_standin(build, root, *options, ready=ready.exists, timeout=TIMEOUT) as process:
        yield process


def config(root: Path, merge: str, *options: str) -> subprocess.CompletedProcess[str]:
    return gglocal(
        "config", "--root", str(root), "--component", "com.example.Validator", "--merge", merge, *options
    )


def restarts(root: Path) -> int:
    components = json.loads(gglocal("status", "--root", str(root), "--json").stdout)
    return int(components["com.example.Validator"]["restarts"])


def test_cli_config_rejected_by_the_component_fails_with_its_message(tmp_path: Path) -> None:
    build = tmp_path / "build"
    write_validator_build(build)
    root = tmp_path / "root"
    with standin(build, root, "--nucleus", "classic"):
        rejected = config(root, '{"TopK": "0"}')
        assert rejected.returncode == 2
        assert "TopK must be 1 to 10, got '0'" in rejected.stderr
        assert "Components reported that their to-be-deployed configuration is invalid" in rejected.stderr
        full = json.loads(gglocal("status", "--root", str(root), "--json", "--full").stdout)
        assert full["nucleus"] == "classic" and full["deployments"][-1]["status"] == "FAILED"
        accepted = config(root, '{"TopK": "7"}')
        assert (accepted.returncode, json.loads(accepted.stdout)) == (0, ["/TopK"])


def test_cli_lite_refuses_a_classic_only_build_and_runs_a_portable_one(tmp_path: Path) -> None:
    classic_only = tmp_path / "classic-only"
    write_build(classic_only)  # Platform without runtime, Run spelt with a capital
    refused = gglocal("deploy", str(classic_only), "--root", str(tmp_path / "refused"), "--nucleus", "lite")
    assert refused.returncode == 2
    assert "Skipping manifest as it does not include a runtime platform field." in refused.stderr
    assert "nucleus lite runs none of its manifests" in refused.stderr

    build = tmp_path / "portable"
    write_validator_build(build)
    root = tmp_path / "root"
    with standin(build, root, "--nucleus", "lite", "--mqtt", "127.0.0.1:9"):
        deadline = time.monotonic() + TIMEOUT
        status = gglocal("status", "--root", str(root))
        while "State: RUNNING" not in status.stdout and time.monotonic() < deadline:
            time.sleep(0.2)
            status = gglocal("status", "--root", str(root))
        assert "Nucleus: lite" in status.stdout
        assert "Errors (last hour): 0" in status.stdout and "Restarts: 0" in status.stdout
        assert "IoT Core: mqtt 127.0.0.1:9 NOT connected, no spooler, 0 delivered" in status.stdout
        state = json.loads((root / "gglocal.json").read_text())
        assert Path(state["ipc_socket"]).name == "gg-ipc.socket" and state["nucleus"] == "lite"
        components = json.loads(gglocal("status", "--root", str(root), "--json").stdout)
        assert set(components["com.example.Validator"]) == {
            "version",
            "state",
            "errors",
            "errors_total",
            "restarts",
        }
        log = (root / "logs" / "com.example.Validator.log").read_text()
        assert "this core does not validate configuration" in log
        assert config(root, '{"TopK": "6"}').returncode == 0  # a local deployment: live, no restart
        cloud = config(root, '{"TopK": "7"}', "--cloud")  # as from the cloud: lite restarts it
        assert (cloud.returncode, json.loads(cloud.stdout)) == (0, ["/TopK"])
        deadline = time.monotonic() + TIMEOUT
        while restarts(root) != 1:
            assert time.monotonic() < deadline, "lite did not restart the component for a cloud deployment"
            time.sleep(0.2)
