"""Configuration deployments as each core carries them out: the Java nucleus validates with the running
component over IPC (real awsiotsdk client), fails on REJECTED or silence and keeps the old configuration,
and restarts only what its rendered lifecycle changed, local or from the cloud; nucleus lite applies a local
one live (one event per key, written one at a time; RESET silent) and restarts the component for a cloud
one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from awsiot.greengrasscoreipc import model

from gglocal import ComponentState, ConfigurationValidationError, Core
from tests.gglocal_helpers import component, lines, wait_until, write_recipes

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 30.0
CoreFactory = Callable[..., Core]
ClientFactory = Callable[[Any, str], Any]
NAME = "com.example.Conf"
DEFAULTS = {"Topic": "a", "Package": "p1", "Other": "x", "Threshold": "0.5"}
RECIPE = component(
    NAME,
    {
        "Setenv": {"TOPIC": "{configuration:/Topic}"},
        "Install": "echo {configuration:/Package} >> installs.log",
        "Run": 'echo "$TOPIC" >> runs.log; sleep 60',
    },
    ComponentConfiguration={"DefaultConfiguration": DEFAULTS},
)
LITE_RECIPE = component(
    NAME,
    {"install": "echo i >> installs.log", "run": "echo {configuration:/Other} >> runs.log; sleep 60"},
    ComponentConfiguration={"DefaultConfiguration": DEFAULTS},
)


def started(core: Core, tmp_path: Path, recipe: dict[str, Any]) -> tuple[Path, Path]:
    core.deploy(recipe_dir=write_recipes(tmp_path / "recipes", recipe))
    work = core.root / "work" / NAME
    assert wait_until(lambda: len(lines(work / "runs.log")) == 1, TIMEOUT)
    return work / "runs.log", work / "installs.log"


@pytest.mark.parametrize("cloud", [False, True], ids=["local", "cloud"])
def test_classic_restarts_only_when_the_rendered_lifecycle_changes(
    cloud: bool, core_for: CoreFactory, tmp_path: Path
) -> None:
    core = core_for("classic")
    runs, installs = started(core, tmp_path, RECIPE)
    assert core.update_config(NAME, {"Other": "y"}, cloud=cloud) == ["/Other"]
    assert not wait_until(lambda: len(lines(runs)) > 1, 1.5)  # nothing rendered from Other: updated live
    core.update_config(NAME, {"Topic": "b"}, cloud=cloud)
    assert wait_until(lambda: lines(runs) == ["a", "b"], TIMEOUT)  # Setenv changed: restarted
    assert lines(installs) == ["p1"]
    core.update_config(NAME, {"Package": "p2"}, cloud=cloud)
    assert wait_until(lambda: lines(installs) == ["p1", "p2"], TIMEOUT)  # Install changed: reinstalled
    assert wait_until(lambda: lines(runs) == ["a", "b", "b"], TIMEOUT)
    assert core.runner(NAME).errors_total == 0


class Reader:
    """The test's own IPC client as the component: at each update event, the whole configuration it reads."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.events: list[list[str]] = []
        self.seen: list[dict[str, Any]] = []
        future, _ = client.subscribe_to_configuration_update_async(on_stream_event=self)
        future.result(TIMEOUT)

    def __call__(self, events: model.ConfigurationUpdateEvents) -> None:
        self.events.append(list(events.configuration_update_event.key_path))

    def configuration(self) -> dict[str, Any]:
        return dict(self.client.get_configuration_async().result(TIMEOUT).value)


def test_lite_applies_a_local_configuration_deployment_live_one_event_per_key(
    core_for: CoreFactory, tmp_path: Path, ipc_client: ClientFactory
) -> None:
    core = core_for("lite")
    runs, installs = started(core, tmp_path, LITE_RECIPE)
    assert core.ipc is not None
    reader = Reader(ipc_client(core.ipc, core.runner(NAME).spec.env["SVCUID"]))
    assert core.update_config(NAME, {"Other": "y", "Threshold": "0.7"}) == ["/Other", "/Threshold"]
    assert wait_until(lambda: len(reader.events) == 2, TIMEOUT)
    assert reader.events == [["Other"], ["Threshold"]]
    assert reader.configuration() == {**DEFAULTS, "Other": "y", "Threshold": "0.7"}
    assert core.update_config(NAME, {}, ["/Threshold"]) == ["/Threshold"]  # deleted, without an event
    assert not wait_until(lambda: len(reader.events) > 2 or len(lines(runs)) > 1, 1.5)
    assert "Threshold" not in reader.configuration()
    assert (lines(runs), lines(installs)) == (["x"], ["i"])  # never restarted
    assert core.states()[NAME]["restarts"] == 0 and core.state(NAME) == ComponentState.RUNNING
    assert core.deployments[-1]["kind"] == f"config {NAME}"


def test_lite_writes_a_merge_one_key_at_a_time(core_for: CoreFactory, tmp_path: Path) -> None:
    """ggconfigd writes each key in its own transaction and notifies before the next: what a component reads
    at the first event may lack the rest of the deployment."""
    core = core_for("lite")
    started(core, tmp_path, LITE_RECIPE)
    seen: list[tuple[str, str]] = []

    def at_event(component: str, path: tuple[str, ...]) -> None:
        current = core.config.get(component)
        seen.append((current["Other"], current["Threshold"]))

    core.config.subscribe(NAME, (), at_event)
    core.update_config(NAME, {"Other": "y", "Threshold": "0.7"})
    assert seen == [("y", "0.5"), ("y", "0.7")]


def test_lite_restarts_the_component_on_a_cloud_configuration_deployment(
    core_for: CoreFactory, tmp_path: Path
) -> None:
    core = core_for("lite")
    runs, installs = started(core, tmp_path, LITE_RECIPE)
    assert core.update_config(NAME, {"Other": "y"}, cloud=True) == ["/Other"]
    assert wait_until(lambda: lines(runs) == ["x", "y"], TIMEOUT)  # the new process reads the new value
    core.update_config(NAME, {}, ["/Threshold"], cloud=True)  # RESET: still a change, still a restart
    assert wait_until(lambda: lines(runs) == ["x", "y", "y"], TIMEOUT)
    assert "Threshold" not in core.config.get(NAME)
    assert core.update_config(NAME, {"Other": "y"}, cloud=True) == []  # nothing changed: nothing restarts
    assert not wait_until(lambda: len(lines(runs)) > 3, 1.0)
    assert lines(installs) == ["i"]
    assert core.wait_for_state(NAME, {ComponentState.RUNNING}, TIMEOUT)
    assert core.deployments[-1]["kind"] == f"cloud config {NAME}"


class Validator:
    """The test's own IPC client as the component, answering validation events."""

    def __init__(self, client: Any, answer: Callable[[dict[str, Any]], tuple[str, str] | None]) -> None:
        self.client = client
        self.answer = answer
        self.events: list[model.ValidateConfigurationUpdateEvent] = []
        self.seen = threading.Event()
        future, self.operation = client.subscribe_to_validate_configuration_updates_async(
            on_stream_event=self
        )
        future.result(TIMEOUT)

    def __call__(self, events: model.ValidateConfigurationUpdateEvents) -> None:
        event = events.validate_configuration_update_event
        self.events.append(event)
        self.seen.set()
        verdict = self.answer(event.configuration)
        if verdict is not None:
            report = model.ConfigurationValidityReport(
                status=verdict[0], deployment_id=event.deployment_id, message=verdict[1]
            )
            self.client.send_configuration_validity_report_async(configuration_validity_report=report)


def rejecting_low_thresholds(configuration: dict[str, Any]) -> tuple[str, str]:
    if float(configuration["Threshold"]) < 0.1:
        return "REJECTED", f"Threshold {configuration['Threshold']} is below 0.1"
    return "ACCEPTED", ""


def test_classic_validates_with_the_component_and_keeps_the_old_configuration_on_rejection(
    core_for: CoreFactory, tmp_path: Path, ipc_client: ClientFactory
) -> None:
    core = core_for("classic")
    runs, _ = started(core, tmp_path, RECIPE)
    assert core.ipc is not None
    client = ipc_client(core.ipc, core.runner(NAME).spec.env["SVCUID"])
    validator = Validator(client, rejecting_low_thresholds)
    with pytest.raises(ConfigurationValidationError) as info:
        core.update_config(NAME, {"Threshold": "0.01"})
    assert str(info.value) == (
        "Components reported that their to-be-deployed configuration is invalid "
        f"{{ name = {NAME}, message = Threshold 0.01 is below 0.1 }}"
    )
    assert validator.events[0].configuration == {**DEFAULTS, "Threshold": "0.01"}  # the whole proposal
    assert core.config.get(NAME, ["Threshold"]) == "0.5"
    assert core.deployments[-1]["status"] == "FAILED"
    assert core.update_config(NAME, {"Threshold": "0.2"}) == ["/Threshold"]
    assert core.config.get(NAME, ["Threshold"]) == "0.2"
    assert (
        len(validator.events) == 2 and validator.events[0].deployment_id != validator.events[1].deployment_id
    )
    assert core.update_config(NAME, {"Threshold": "0.2"}) == []  # no change proposed: nothing asked
    assert len(validator.events) == 2
    assert lines(runs) == ["a"]  # Threshold is not rendered into the lifecycle: no restart


def test_classic_fails_the_deployment_when_no_report_comes_in_time(
    core_for: CoreFactory, tmp_path: Path, ipc_client: ClientFactory
) -> None:
    core = core_for("classic", validation_timeout_s=0.5)
    started(core, tmp_path, RECIPE)
    assert core.ipc is not None
    validator = Validator(
        ipc_client(core.ipc, core.runner(NAME).spec.env["SVCUID"]), lambda configuration: None
    )
    with pytest.raises(ConfigurationValidationError, match="Error while waiting for validation report"):
        core.update_config(NAME, {"Topic": "b"})
    assert validator.seen.is_set()
    assert core.config.get(NAME, ["Topic"]) == "a"
    validator.operation.close().result(TIMEOUT)
    assert wait_until(lambda: not core.ipc.operations.validation.subscribed(NAME), TIMEOUT)
    assert core.update_config(NAME, {"Topic": "b"}) == ["/Topic"]  # nobody validates any more


def test_classic_validates_a_redeployment_s_update_config_before_stopping_anything(
    core_for: CoreFactory, tmp_path: Path, ipc_client: ClientFactory
) -> None:
    core = core_for("classic")
    runs, _ = started(core, tmp_path, RECIPE)
    runner = core.runner(NAME)
    assert core.ipc is not None
    validator = Validator(ipc_client(core.ipc, runner.spec.env["SVCUID"]), rejecting_low_thresholds)
    update = {NAME: {"MERGE": {"Threshold": "0.01"}}}
    with pytest.raises(ConfigurationValidationError, match=r"Threshold 0\.01 is below 0\.1"):
        core.deploy(recipe_dir=tmp_path / "recipes", update_config=update)
    assert validator.events[0].configuration["Threshold"] == "0.01"
    assert core.runner(NAME) is runner and runner.state == ComponentState.RUNNING
    assert (core.config.get(NAME, ["Threshold"]), lines(runs)) == ("0.5", ["a"])
    assert (core.deployments[-1]["kind"], core.deployments[-1]["status"]) == ("deploy", "FAILED")
