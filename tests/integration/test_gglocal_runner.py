"""Component lifecycle runner with real ``sh -c`` scripts: Skipif, timeouts, stop escalation, stop order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gglocal import ComponentState, Core, RestartPolicy
from gglocal.lifecycle import parse_lifecycle
from gglocal.render import RenderedStep
from gglocal.runner import ComponentRunner
from gglocal.steps import ComponentSpec

pytestmark = pytest.mark.integration

TIMEOUT = 20.0
POLICY = RestartPolicy(max_errors=3, base_delay_s=0.05, max_delay_s=0.1, grace_s=1.0)


def runner(tmp_path: Path, lifecycle: dict[str, Any], **env: str) -> ComponentRunner:
    parsed = parse_lifecycle(lifecycle)

    def render(name: str) -> RenderedStep:
        step = parsed.steps[name]
        return RenderedStep(step.script, {**parsed.setenv, **step.setenv}, step.skipif)

    spec = ComponentSpec(
        name="com.example.T",
        version="1.0.0",
        lifecycle=parsed,
        work_dir=tmp_path / "work",
        log_path=tmp_path / "logs" / "com.example.T.log",
        env={**os.environ, **env},
        render=render,
    )
    return ComponentRunner(spec, policy=POLICY)


def test_skipif_onpath_and_exists_skip_the_step(tmp_path: Path) -> None:
    (tmp_path / "marker").touch()
    component = runner(
        tmp_path,
        {
            "Install": {"Script": "echo ran >> install.log", "Skipif": "onpath sh"},
            "Run": {"Script": "echo ran >> run.log", "Skipif": f"exists {tmp_path / 'marker'}"},
        },
    )
    component.start()
    assert component.wait_for({ComponentState.FINISHED}, TIMEOUT)
    component.stop()
    assert not (tmp_path / "work" / "install.log").exists()
    assert not (tmp_path / "work" / "run.log").exists()


def test_install_timeout_counts_as_an_error_until_broken(tmp_path: Path) -> None:
    component = runner(tmp_path, {"Install": {"Script": "sleep 30", "Timeout": 0.3}, "Run": "true"})
    component.start()
    assert component.wait_for({ComponentState.BROKEN}, TIMEOUT)
    assert component.install_runs == 3
    component.stop()
    assert component.state == ComponentState.BROKEN


def test_setenv_layers_and_log_format(tmp_path: Path) -> None:
    component = runner(
        tmp_path,
        {
            "Setenv": {"A": "lifecycle", "B": "lifecycle"},
            "Run": {"Script": 'echo "$A $B $C"; echo oops >&2', "Setenv": {"B": "step"}},
        },
        C="parent",
    )
    component.start()
    assert component.wait_for({ComponentState.FINISHED}, TIMEOUT)
    component.stop()
    log = (tmp_path / "logs" / "com.example.T.log").read_text()
    assert "[INFO] (Copier) com.example.T: stdout. lifecycle step parent." in log
    assert "[WARN] (Copier) com.example.T: stderr. oops." in log
    assert "scriptName=services.com.example.T.lifecycle.Run" in log
    assert "shell-runner-exit. exitCode=0" in log


def test_stop_escalates_to_sigkill_for_a_script_ignoring_sigterm(tmp_path: Path) -> None:
    component = runner(tmp_path, {"Run": "trap '' TERM; echo $$ > pid; while true; do sleep 0.1; done"})
    component.start()
    pid_file = tmp_path / "work" / "pid"
    deadline = time.monotonic() + TIMEOUT
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    started = time.monotonic()
    component.stop()
    assert time.monotonic() - started < POLICY.grace_s + 5
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert component.state == ComponentState.FINISHED


def test_components_stop_in_reverse_dependency_order(tmp_path: Path) -> None:
    order_file = tmp_path / "order.log"
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name, deps in (("com.example.Base", {}), ("com.example.Top", {"com.example.Base": {}})):
        doc = {
            "ComponentName": name,
            "ComponentVersion": "1.0.0",
            "ComponentDependencies": deps,
            "Manifests": [
                {
                    "Lifecycle": {
                        "Run": f"echo start-{name} >> {order_file}; sleep 30",
                        "Shutdown": f"echo stop-{name} >> {order_file}",
                    }
                }
            ],
        }
        (recipes / f"{name}.json").write_text(json.dumps(doc))
    core = Core(tmp_path / "root", restart_policy=POLICY)
    try:
        core.deploy(recipe_dir=recipes)
        assert core.wait_for_state("com.example.Top", {ComponentState.RUNNING}, TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and (
            not order_file.exists() or order_file.read_text().count("start") < 2
        ):
            time.sleep(0.05)
    finally:
        core.stop()
    lines = order_file.read_text().split()
    # Run counts as RUNNING once spawned, so the two start lines may race; stops are strictly ordered
    assert sorted(lines[:2]) == ["start-com.example.Base", "start-com.example.Top"]
    assert lines[2:] == ["stop-com.example.Top", "stop-com.example.Base"]


def test_sigint_stops_the_cli_cleanly(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    doc = {
        "ComponentName": "com.example.Sleep",
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Lifecycle": {}}],
    }
    doc["Manifests"][0]["Lifecycle"] = {"Run": "echo $$ > pid; exec sleep 60"}
    (recipes / "sleep.json").write_text(json.dumps(doc))
    root = tmp_path / "root"
    with subprocess.Popen(
        [sys.executable, "-m", "gglocal", "deploy", "--recipe-dir", str(recipes), "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as process:
        pid_file = root / "work" / "com.example.Sleep" / "pid"
        deadline = time.monotonic() + TIMEOUT
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid_file.exists()
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
