"""``python -m gglocal`` end to end: deploy (stdout IoT Core), status, config, stop; a long root path."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest

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


def write_build(build: Path) -> None:
    (build / "recipes").mkdir(parents=True)
    artifacts = build / "artifacts" / "com.example.Echo" / "1.0.0"
    artifacts.mkdir(parents=True)
    (artifacts / "echo.py").write_text(ECHO_SCRIPT)
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Echo",
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "Message": "default",
                "accessControl": {
                    "aws.greengrass.ipc.mqttproxy": {
                        "echo": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["cli/#"]}
                    }
                },
            }
        },
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Artifacts": [{"URI": "s3://b/echo.py"}],
                "Lifecycle": {"Run": f"{sys.executable} -u {{artifacts:path}}/echo.py"},
            }
        ],
    }
    (build / "recipes" / "echo.json").write_text(json.dumps(recipe))


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
