"""Small sh components under each core profile: environment, socket and working directory; lite's scripts
(Setenv intact, substituted values escaped, cut off at another component's variable), its refusals, its
local deployments that do not unarchive, its YAML strings; UpdateState ERRORED and RUNNING; when errors
make a component BROKEN; Shutdown."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gglocal import ComponentState, Core, DeploymentError, RestartPolicy
from tests.gglocal_helpers import component, lines, wait_until, write_recipes

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 30.0
CoreFactory = Callable[..., Core]
ClientFactory = Callable[[Any, str], Any]
DONE = {ComponentState.FINISHED, ComponentState.BROKEN}
GREENGRASS = (
    "SVCUID",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH",
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
    "AWS_IOT_THING_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "GG_ROOT_CA_PATH",
    "GGC_VERSION",
    "AWS_CA_BUNDLE",
)


def work(core: Core, name: str) -> Path:
    return core.root / "work" / name


def deploy(core: Core, tmp_path: Path, *recipes: dict[str, Any]) -> list[str]:
    return core.deploy(recipe_dir=write_recipes(tmp_path / f"recipes-{core.nucleus.name}", *recipes))


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_environment_socket_and_working_directory(
    nucleus: str, core_for: CoreFactory, tmp_path: Path
) -> None:
    core = core_for(nucleus, thing_name="t-1", region="eu-west-1")
    deploy(core, tmp_path, component("com.example.Env", {"run": "env > env.txt; pwd > pwd.txt"}))
    assert core.wait_for_state("com.example.Env", {ComponentState.FINISHED}, TIMEOUT)
    folder = work(core, "com.example.Env")
    env = dict(line.split("=", 1) for line in lines(folder / "env.txt") if "=" in line)
    seen = {k: env[k] for k in GREENGRASS if k in env}
    socket = str(core.root / ("gg-ipc.socket" if nucleus == "lite" else "ipc.socket"))
    expected = {
        "SVCUID": seen["SVCUID"],
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": seen["SVCUID"],
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": socket,
        "AWS_IOT_THING_NAME": "t-1",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "GG_ROOT_CA_PATH": str(core.root / "rootCA.pem"),
    }
    if nucleus == "lite":
        expected |= {"GGC_VERSION": "2.6.0", "AWS_CA_BUNDLE": str(core.root / "rootCA.pem")}
    else:
        expected |= {"GGC_VERSION": core.nucleus.version, "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": socket}
    assert seen == expected
    assert lines(folder / "pwd.txt") == [str(folder)]


TRICKY = 'a "b" $HOME \\ `c`'


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_configuration_reaches_scripts_through_setenv_intact(
    nucleus: str, core_for: CoreFactory, tmp_path: Path
) -> None:
    core = core_for(nucleus)
    recipe = component(
        "com.example.Quote",
        {
            "Setenv": {"VALUE": "{configuration:/Value}"},
            "run": "printf '%s' \"$VALUE\" > setenv.txt; printf '%s' '{configuration:/Value}' > single.txt",
        },
        ComponentConfiguration={"DefaultConfiguration": {"Value": TRICKY}},
    )
    deploy(core, tmp_path, recipe)
    assert core.wait_for_state("com.example.Quote", {ComponentState.FINISHED}, TIMEOUT)
    folder = work(core, "com.example.Quote")
    assert (folder / "setenv.txt").read_text() == TRICKY
    single = (folder / "single.txt").read_text()
    assert single == (r"a \"b\" \$HOME \\ \`c\`" if nucleus == "lite" else TRICKY)


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_another_component_s_variable_cuts_a_lite_script_off(
    nucleus: str, core_for: CoreFactory, tmp_path: Path
) -> None:
    core = core_for(nucleus)
    # Lib keeps running: a HARD dependency whose run step ends stops its dependent on lite (BindsTo=)
    lib = component("com.example.Lib", {"run": "exec sleep 600"})
    app = component(
        "com.example.App",
        {"run": "echo before > before.txt; echo {com.example.Lib:work:path} > after.txt"},
        ComponentDependencies={"com.example.Lib": {"VersionRequirement": "^1.0.0"}},
    )
    deploy(core, tmp_path, lib, app)
    assert core.wait_for_state("com.example.App", {ComponentState.FINISHED}, TIMEOUT)
    folder = work(core, "com.example.App")
    assert lines(folder / "before.txt") == ["before"]
    if nucleus == "lite":
        assert not (folder / "after.txt").exists()
    else:
        assert lines(folder / "after.txt") == [str(work(core, "com.example.Lib"))]


def test_lite_refuses_what_it_cannot_run_and_classic_runs_it(core_for: CoreFactory, tmp_path: Path) -> None:
    capitalised = component("com.example.Caps", {"Install": "true", "Run": "true"})
    no_runtime = component("com.example.Old", {"run": "true"})
    no_runtime["Manifests"][0]["Platform"] = {"os": "linux"}
    lite = core_for("lite")
    with pytest.raises(DeploymentError, match=r"no install, run or startup step.*lite-lifecycle-step"):
        deploy(lite, tmp_path / "a", capitalised)
    with pytest.raises(DeploymentError, match="does not include a runtime platform field"):
        deploy(lite, tmp_path / "b", no_runtime)
    assert lite.states() == {}
    classic = core_for("classic")
    assert sorted(deploy(classic, tmp_path / "c", capitalised, no_runtime)) == [
        "com.example.Caps",
        "com.example.Old",
    ]


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_only_classic_unarchives_a_local_deployment(
    nucleus: str, core_for: CoreFactory, tmp_path: Path
) -> None:
    core = core_for(nucleus)
    artifacts = tmp_path / "artifacts" / "com.example.Zip" / "1.0.0"
    artifacts.mkdir(parents=True)
    with zipfile.ZipFile(artifacts / "lib.zip", "w") as bundle:
        bundle.writestr("helper.py", "VALUE = 1\n")
    recipe = component("com.example.Zip", {"run": "ls {artifacts:decompressedPath} > listing.txt"})
    recipe["Manifests"][0]["Artifacts"] = [{"URI": "s3://b/lib.zip", "Unarchive": "ZIP"}]
    core.deploy(recipe_dir=write_recipes(tmp_path / "recipes", recipe), artifact_dir=tmp_path / "artifacts")
    assert core.wait_for_state("com.example.Zip", {ComponentState.FINISHED}, TIMEOUT)
    assert (core.root / "packages/artifacts/com.example.Zip/1.0.0/lib.zip").is_file()
    listing = lines(work(core, "com.example.Zip") / "listing.txt")
    assert listing == ([] if nucleus == "lite" else ["lib"])


def test_lite_reads_yaml_integers_as_strings(
    core_for: CoreFactory, tmp_path: Path, ipc_client: ClientFactory
) -> None:
    recipe = (
        "ComponentName: com.example.Yaml\nComponentVersion: 1.0.0\nComponentConfiguration:\n"
        "  DefaultConfiguration:\n    Interval: 5\nManifests:\n  - Platform: {os: linux, runtime: '*'}\n"
        "    Lifecycle:\n      run: sleep 60\n"
    )
    values = {}
    for nucleus in ("lite", "classic"):
        core = core_for(nucleus)
        folder = tmp_path / nucleus
        folder.mkdir()
        (folder / "yaml.yaml").write_text(recipe)
        core.deploy(recipe_dir=folder)
        assert core.ipc is not None
        client = ipc_client(core.ipc, core.runner("com.example.Yaml").spec.env["SVCUID"])
        values[nucleus] = client.get_configuration_async(key_path=["Interval"]).result(TIMEOUT).value
    assert values == {"lite": {"Interval": "5"}, "classic": {"Interval": 5}}


SLEEPER = component("com.example.Sleeper", {"run": "echo started >> starts.log; sleep 60"})


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_update_state_errored_restarts_only_on_classic(
    nucleus: str,
    core_for: CoreFactory,
    tmp_path: Path,
    ipc_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = core_for(nucleus)
    deploy(core, tmp_path, SLEEPER)
    starts = work(core, "com.example.Sleeper") / "starts.log"
    assert wait_until(lambda: len(lines(starts)) == 1, TIMEOUT)
    assert core.ipc is not None
    client = ipc_client(core.ipc, core.runner("com.example.Sleeper").spec.env["SVCUID"])
    with caplog.at_level(logging.WARNING, logger="gglocal.runner"):
        client.update_state_async(state="RUNNING").result(TIMEOUT)  # RUNNING is reported from STARTING only
    assert "Invalid reported state" in caplog.text
    client.update_state_async(state="ERRORED").result(TIMEOUT)
    runner = core.runner("com.example.Sleeper")
    if nucleus == "classic":
        assert wait_until(lambda: len(lines(starts)) == 2, TIMEOUT)
        assert (runner.errors, runner.restarts) == (1, 1)
    else:
        assert not wait_until(lambda: len(lines(starts)) > 1, 1.5)
        assert (runner.state, runner.errors, runner.restarts) == (ComponentState.RUNNING, 0, 0)


def test_classic_breaks_on_three_errors_each_within_the_window_of_the_last(
    core_for: CoreFactory, tmp_path: Path
) -> None:
    policy = RestartPolicy(max_errors=3, base_delay_s=0.0, max_delay_s=0.0, grace_s=2.0, error_window_s=0.5)
    core = core_for("classic", restart_policy=policy)
    slow = component("com.example.Slow", {"run": "echo x >> runs.log; sleep 1; exit 1"})
    fast = component("com.example.Fast", {"run": "echo x >> runs.log; exit 1"})
    deploy(core, tmp_path, slow, fast)
    assert core.wait_for_state("com.example.Fast", {ComponentState.BROKEN}, TIMEOUT)
    assert len(lines(work(core, "com.example.Fast") / "runs.log")) == 3
    slow_runs = work(core, "com.example.Slow") / "runs.log"
    assert wait_until(lambda: len(lines(slow_runs)) >= 5, TIMEOUT)  # a second apart: each count starts again
    runner = core.runner("com.example.Slow")
    assert runner.state != ComponentState.BROKEN and runner.errors_total >= 4


def test_lite_breaks_a_component_at_its_start_limit(core_for: CoreFactory, tmp_path: Path) -> None:
    core = core_for("lite")
    deploy(core, tmp_path, component("com.example.Fast", {"run": "echo x >> runs.log; exit 1"}))
    assert core.wait_for_state("com.example.Fast", {ComponentState.BROKEN}, TIMEOUT)
    assert len(lines(work(core, "com.example.Fast") / "runs.log")) == 3
    assert core.states()["com.example.Fast"]["errors"] == 3


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_broken_is_cleared_only_by_a_new_deployment(
    nucleus: str, core_for: CoreFactory, tmp_path: Path
) -> None:
    core = core_for(nucleus)
    fast = component(
        "com.example.Fast",
        {"run": "echo x >> runs.log; exit 1"},
        ComponentConfiguration={"DefaultConfiguration": {"Unused": "a"}},
    )
    recipes = write_recipes(tmp_path / "recipes", fast)
    core.deploy(recipe_dir=recipes)
    runs = work(core, "com.example.Fast") / "runs.log"
    assert core.wait_for_state("com.example.Fast", {ComponentState.BROKEN}, TIMEOUT)
    # a local configuration deployment leaves it BROKEN (Java: no rendered step changed; lite: applied live)
    core.update_config("com.example.Fast", {"Unused": "b"})
    assert not wait_until(lambda: len(lines(runs)) > 3, 1.0)
    assert core.state("com.example.Fast") == ComponentState.BROKEN
    core.deploy(recipe_dir=recipes)
    assert wait_until(lambda: len(lines(runs)) > 3, TIMEOUT)


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_shutdown_runs_only_on_classic(nucleus: str, core_for: CoreFactory, tmp_path: Path) -> None:
    core = core_for(nucleus)
    deploy(
        core, tmp_path, component("com.example.Stop", {"run": "sleep 60", "shutdown": "echo bye > bye.txt"})
    )
    assert core.wait_for_state("com.example.Stop", {ComponentState.RUNNING}, TIMEOUT)
    core.stop_components()
    assert (work(core, "com.example.Stop") / "bye.txt").exists() is (nucleus == "classic")


@pytest.mark.parametrize("nucleus", ["lite", "classic"])
def test_a_starting_component_may_report_running(
    nucleus: str, core_for: CoreFactory, tmp_path: Path, ipc_client: ClientFactory
) -> None:
    core = core_for(nucleus)
    deploy(core, tmp_path, component("com.example.Slow", {"startup": "sleep 30"}))
    assert core.wait_for_state("com.example.Slow", {ComponentState.STARTING}, TIMEOUT)
    assert core.ipc is not None
    client = ipc_client(core.ipc, core.runner("com.example.Slow").spec.env["SVCUID"])
    client.update_state_async(state="RUNNING").result(TIMEOUT)
    assert core.wait_for_state("com.example.Slow", {ComponentState.RUNNING}, TIMEOUT)
