"""A further deployment into a running stand-in (``gglocal deployment``, as ``greengrass-cli deployment
create`` or ``ggl-cli deploy`` on a device): a new version of a component replaces the running one, what
depends HARD on it restarts (both cores), what does not keeps running, and a version that a deployed
component's requirement excludes fails the deployment with the reason. Both profiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import standin

pytestmark = pytest.mark.integration

TIMEOUT = 30.0
SCRIPT = r"""
import os, sys, time
with open("starts.log", "a") as log:
    log.write(f"{sys.argv[1]} {os.getpid()}\n")
while True:
    time.sleep(1)
"""
DATA, USER, BYSTANDER = "com.example.Data", "com.example.User", "com.example.Bystander"


def write_component(build: Path, name: str, version: str, depends: dict[str, Any] | None = None) -> None:
    (build / "recipes").mkdir(parents=True, exist_ok=True)
    artifacts = build / "artifacts" / name / version
    artifacts.mkdir(parents=True)
    (artifacts / "script.py").write_text(SCRIPT)
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDependencies": depends or {},
        "Manifests": [
            {
                "Platform": {"os": "linux", "runtime": "*"},
                "Artifacts": [{"URI": f"s3://b/{name}/script.py"}],
                "Lifecycle": {"run": f"exec {sys.executable} -u {{artifacts:path}}/script.py {version}"},
            }
        ],
    }
    (build / "recipes" / f"{name}-{version}.json").write_text(json.dumps(recipe))


def needs_data(kind: str = "HARD") -> dict[str, Any]:
    return {DATA: {"VersionRequirement": ">=1.0.0 <2.0.0", "DependencyType": kind}}


def gglocal(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gglocal", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def starts(root: Path, name: str) -> list[str]:
    log = root / "work" / name / "starts.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"not within {TIMEOUT} s: {what}"
        time.sleep(0.1)


@pytest.fixture(params=["classic", "lite"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A stand-in running Data 1.0.0, User (HARD on Data) and Bystander (SOFT on Data)."""
    build = tmp_path / "build"
    write_component(build, DATA, "1.0.0")
    write_component(build, USER, "1.0.0", needs_data())
    write_component(build, BYSTANDER, "1.0.0", needs_data("SOFT"))
    root = tmp_path / "root"
    ready = lambda: bool(starts(root, USER) and starts(root, BYSTANDER))  # noqa: E731
    with standin(build, root, "--nucleus", request.param, ready=ready, timeout=TIMEOUT):
        yield root


def deploy_data(root: Path, tmp_path: Path, version: str) -> subprocess.CompletedProcess[str]:
    """``gglocal deployment`` of Data ``version`` alone into the stand-in at root."""
    upgrade = tmp_path / f"data-{version}"
    write_component(upgrade, DATA, version)
    return gglocal("deployment", str(upgrade), "--root", str(root), "--only", DATA)


def test_a_new_version_replaces_the_running_one_and_its_hard_dependents_restart(
    running: Path, tmp_path: Path
) -> None:
    done = deploy_data(running, tmp_path, "1.1.0")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "SUCCEEDED"
    wait_for(lambda: starts(running, DATA) == ["1.0.0", "1.1.0"], "Data 1.1.0 started")
    wait_for(lambda: len(starts(running, USER)) == 2, "User restarted")
    components = json.loads(gglocal("status", "--root", str(running), "--json").stdout)
    assert components[DATA]["version"] == "1.1.0"
    assert {components[n]["state"] for n in (DATA, USER, BYSTANDER)} == {"RUNNING"}
    assert starts(running, BYSTANDER) == ["1.0.0"]  # SOFT: left running


def test_a_version_a_deployed_component_excludes_fails_the_deployment_and_changes_nothing(
    running: Path, tmp_path: Path
) -> None:
    failed = deploy_data(running, tmp_path, "2.0.0")
    assert failed.returncode == 2
    assert f"{USER} needs {DATA} >=1.0.0 <2.0.0, not 2.0.0" in failed.stderr
    status = json.loads(gglocal("status", "--root", str(running), "--json", "--full").stdout)
    assert status["components"][DATA]["version"] == "1.0.0"
    assert status["deployments"][-1]["status"] == "FAILED"
    assert starts(running, DATA) == ["1.0.0"] and starts(running, USER) == ["1.0.0"]


def test_a_deployment_request_of_the_wrong_shape_is_refused_with_the_reason(running: Path) -> None:
    from gglocal.control import send_command
    from gglocal.errors import ControlError

    with pytest.raises(ControlError, match="must be paths"):
        send_command(running, {"cmd": "deploy", "build_dir": 7})
    missing = gglocal("deployment", str(running / "nowhere"), "--root", str(running))
    assert missing.returncode == 2 and "failed" in missing.stderr


def pid_of(root: Path, name: str) -> int:
    return int((root / "work" / name / "starts.log").read_text().splitlines()[-1].split()[1])


def states(root: Path) -> dict[str, str]:
    components = json.loads(gglocal("status", "--root", str(root), "--json").stdout)
    return {name: info["state"] for name, info in components.items()}


def test_a_hard_dependency_that_dies_restarts_its_dependent_on_classic_and_stops_it_on_lite(
    running: Path, tmp_path: Path
) -> None:
    """Java: the dependent restarts and waits for the dependency. Lite: its unit is BindsTo= the
    dependency's, so it is stopped and stays stopped though the dependency comes back, until a deployment."""
    lite = (
        json.loads(gglocal("status", "--root", str(running), "--json", "--full").stdout)["nucleus"] == "lite"
    )
    os.kill(pid_of(running, DATA), signal.SIGKILL)
    wait_for(lambda: len(starts(running, DATA)) == 2, "Data restarted after its error")
    wait_for(lambda: states(running)[DATA] == "RUNNING", "Data running again")
    if lite:
        wait_for(lambda: states(running)[USER] == "FINISHED", "User stopped with its dependency")
        time.sleep(3)  # systemd restarting the dependency does not start the dependent again
        assert states(running)[USER] == "FINISHED" and len(starts(running, USER)) == 1
        other = tmp_path / "bystander-1.1.0"
        write_component(other, BYSTANDER, "1.1.0")  # any further deployment
        done = gglocal("deployment", str(other), "--root", str(running), "--only", BYSTANDER)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: len(starts(running, USER)) == 2, "User started again by the next deployment")
        # stopped with its dependency again, then started by something else first: the next deployment
        # must not start a second one
        os.kill(pid_of(running, DATA), signal.SIGKILL)
        wait_for(lambda: states(running)[USER] == "FINISHED", "User stopped with its dependency again")
        wait_for(lambda: states(running)[DATA] == "RUNNING", "Data running again")
        config = gglocal(
            "config", "--root", str(running), "--component", USER, "--merge", '{"k": "1"}', "--cloud"
        )
        assert config.returncode == 0, config.stderr
        wait_for(lambda: len(starts(running, USER)) == 3, "User started by the cloud configuration")
        later = tmp_path / "bystander-1.2.0"
        write_component(later, BYSTANDER, "1.2.0")
        done = gglocal("deployment", str(later), "--root", str(running), "--only", BYSTANDER)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: len(starts(running, BYSTANDER)) == 3, "Bystander 1.2.0 started")
        time.sleep(2)
        assert len(starts(running, USER)) == 3  # no second User
    else:
        wait_for(lambda: len(starts(running, USER)) == 2, "User restarted for its dependency")
    wait_for(lambda: states(running)[USER] == "RUNNING", "User running")
    assert len(starts(running, BYSTANDER)) == (3 if lite else 1)  # SOFT: untouched by Data's death
