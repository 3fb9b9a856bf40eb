"""A full disk under the outbox, for real: ``python -m gglocal deploy`` runs in its own mount namespace with
``<root>/data`` on a 512 KiB tmpfs (root in the sandbox; ``unshare --mount``), a deployed component publishes
results over real IPC, a real mosquitto receives them. The stand-in must answer ServiceError for what it
cannot store, show the fault in ``gglocal status``, keep its sender alive, and, once the tmpfs is grown
(``nsenter ... mount -o remount``), deliver everything it accepted and accept again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.gglocal_builds import publish_access, write_component

if TYPE_CHECKING:
    from tests.mqtt_broker import Mosquitto, MqttSubscriber, Received

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 30.0
PUBLISHER = r"""
import json, sys, time
from pathlib import Path
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import ServiceError

sync = Path(sys.argv[1])
client = GreengrassCoreIPCClientV2()

def burst(first, count):
    outcome = {}
    for n in range(first, first + count):
        body = json.dumps({"n": n, "pad": "x" * 2000})
        try:
            client.publish_to_iot_core(topic_name="full/results", qos="1", payload=body)
            outcome[n] = "ok"
        except ServiceError as exc:
            outcome[n] = "ServiceError: " + exc.message
    return outcome

def report(name, outcome):  # whole or not at all: the test reads it as soon as it appears
    (sync / (name + ".tmp")).write_text(json.dumps(outcome))
    (sync / (name + ".tmp")).rename(sync / name)

report("phase1.json", burst(0, 400))
while not (sync / "grown").exists():
    time.sleep(0.1)
report("phase2.json", burst(400, 50))
time.sleep(300)
"""


def write_build(build: Path, sync: Path) -> None:
    write_component(
        build,
        "com.example.Results",
        {"Run": f"{sys.executable} -u {{artifacts:path}}/main.py {sync}"},
        script=PUBLISHER,
        configuration=publish_access("full/#"),
    )


def wait_for_file(path: Path, timeout: float = TIMEOUT) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return dict(json.loads(path.read_text()))
        time.sleep(0.1)
    raise AssertionError(f"{path} did not appear in {timeout} s")


def gglocal_status(root: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gglocal", "status", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def payload_numbers(messages: list[Received]) -> set[int]:
    return {int(json.loads(m.payload)["n"]) for m in messages}


def test_a_full_disk_under_the_outbox_is_answered_shown_and_recovered_from_without_losing_anything(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Callable[[list[str]], MqttSubscriber]
) -> None:
    # before: the sender thread died on "database or disk is full" (23 accepted, 3 delivered, nothing more
    # after space came back, status still RUNNING)
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} (util-linux) is needed to give the outbox a small filesystem")
    build, root, sync = tmp_path / "build", tmp_path / "root", tmp_path / "sync"
    sync.mkdir()
    write_build(build, sync)
    data = root / "data"
    data.mkdir(parents=True)
    subscriber = mqtt_subscriber(["full/#"])
    mosquitto.stop()  # offline first, so that the outbox fills
    deploy = f"{sys.executable} -m gglocal deploy {build} --root {root} --mqtt {mosquitto.address}"
    stderr = (tmp_path / "stderr.log").open("w")
    process = subprocess.Popen(
        ["unshare", "--mount", "sh", "-c", f"mount -t tmpfs -o size=512k tmpfs {data} && exec {deploy}"],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        phase1 = wait_for_file(sync / "phase1.json")
        accepted = {int(n) for n, outcome in phase1.items() if outcome == "ok"}
        refused = [outcome for outcome in phase1.values() if outcome != "ok"]
        assert accepted and refused, "the 512 KiB outbox filled up part way"
        assert all("database or disk is full" in outcome for outcome in refused), refused[:3]
        status = gglocal_status(root)
        assert "Outbox fault: cannot store a message: database or disk is full" in status, status
        assert "State: RUNNING" in status

        mosquitto.start()  # the sender sends what it holds, though it cannot remove it from the full disk
        got = subscriber.wait_until(lambda got: payload_numbers(got) >= accepted, TIMEOUT)
        assert payload_numbers(got) >= accepted

        subprocess.run(
            [
                "nsenter",
                "--target",
                str(process.pid),
                "--mount",
                "mount",
                "-o",
                "remount,size=16m",
                str(data),
            ],
            check=True,
            timeout=TIMEOUT,
        )
        (sync / "grown").touch()
        phase2 = wait_for_file(sync / "phase2.json")
        assert set(phase2.values()) == {"ok"}
        everything = accepted | set(range(400, 450))
        got = subscriber.wait_until(lambda got: payload_numbers(got) >= everything, TIMEOUT)
        assert payload_numbers(got) >= everything, "nothing accepted is lost"
        deadline = time.monotonic() + TIMEOUT
        while "Outbox fault" in (status := gglocal_status(root)) or ", 0 queued" not in status:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert (
            subprocess.run(
                [sys.executable, "-m", "gglocal", "stop", "--root", str(root)], timeout=TIMEOUT, check=False
            ).returncode
            == 0
        )
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        stderr.close()
    log = (root / "logs" / "greengrass.log").read_text()
    assert "database or disk is full" in log and "works again after" in log
