"""``Core``: the local stand-in of the Greengrass nucleus, wiring IoT Core, IPC, control and components.

    with Core(tmp_path / "gg", mqtt="127.0.0.1:1883") as core:
        core.deploy(Path("greengrass-build"))
        core.wait_for_state("com.example.Hello", {ComponentState.RUNNING}, timeout=30)
        core.update_config("com.example.Hello", {"Interval": "5"})

Device layout under ``root``: ``packages/artifacts[-unarchived]/<name>/<version>``, ``work/<name>``,
``logs/<name>.log``, ``data/outbox.sqlite``, and ``gglocal.json`` naming the IPC and control sockets.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from gglocal.artifacts import artifact_dirs, install_artifacts
from gglocal.configstore import ConfigStore
from gglocal.control import ControlServer, read_state_file, write_state_file
from gglocal.deployment import (
    BuildSource,
    ConfigUpdate,
    PlannedComponent,
    load_recipes,
    parse_update_config,
    plan_deployment,
)
from gglocal.errors import ControlError, DeploymentError
from gglocal.iotcore import IotCore, StdoutIotCore
from gglocal.leftovers import ProcessRecord, stop_leftovers
from gglocal.mqtt_bridge import MqttBridge, parse_host_port
from gglocal.outbox import DEFAULT_LIMIT, Outbox
from gglocal.private import private_dir
from gglocal.recipe import current_platform
from gglocal.runner import ComponentRunner, ComponentSpec, ComponentState, RestartPolicy
from gglocal.server import IpcServer, short_socket_path
from gglocal.variables import ComponentPaths, VariableContext, expand

logger = logging.getLogger(__name__)


class Core:
    """One stand-in nucleus. ``start()`` is implied by ``deploy()``; ``stop()`` undoes ``start()``."""

    def __init__(
        self,
        root: Path | str,
        *,
        mqtt: str | tuple[str, int] | None = None,
        thing_name: str = "gglocal-thing",
        region: str | None = None,
        verbose: bool = False,
        outbox_limit: int = DEFAULT_LIMIT,
        restart_policy: RestartPolicy | None = None,
        device: Mapping[str, str] | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self.mqtt = parse_host_port(mqtt) if isinstance(mqtt, str) else mqtt
        self.thing_name = thing_name
        self.region = region or os.environ.get("AWS_REGION") or "us-east-1"
        self.verbose = verbose
        self.outbox_limit = outbox_limit
        self.restart_policy = restart_policy or RestartPolicy()
        self.device = dict(device or current_platform())
        self.config = ConfigStore()
        self.stop_requested = threading.Event()
        self._stdout = stdout
        self._outbox: Outbox | None = None
        self.iot: IotCore | None = None
        self.ipc: IpcServer | None = None
        self._control: ControlServer | None = None
        self._planned: dict[str, PlannedComponent] = {}
        self._runners: dict[str, ComponentRunner] = {}
        self._processes: ProcessRecord | None = None
        self._lock = threading.RLock()
        self._started = False

    # -- start / stop ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._refuse_if_running()
        self._make_layout()
        stop_leftovers(self.root / "data")  # of a stand-in that died with this root, before anything starts
        self._processes = ProcessRecord(self.root / "data")
        self._start_iot_core()
        self._start_ipc_server()
        self._start_control()
        self._started = True
        logger.info("local Greengrass core started in %s", self.root)

    def stop(self) -> None:
        if not self._started:
            return
        self.stop_components()
        if self._processes is not None:
            self._processes.close()
        self._stop_control()
        self._stop_ipc_server()
        self._stop_iot_core()
        self._started = False
        logger.info("local Greengrass core stopped")

    def __enter__(self) -> Core:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _refuse_if_running(self) -> None:
        try:
            pid = int(read_state_file(self.root).get("pid", 0))
        except (ControlError, ValueError):
            return
        if pid and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return  # left over from a stand-in that died
            except PermissionError:
                pass
            raise DeploymentError(
                f"another stand-in (pid {pid}) runs with root {self.root}; stop it first: "
                f"python -m gglocal stop --root {self.root}"
            )

    def _make_layout(self) -> None:
        for folder in ("packages/artifacts", "packages/artifacts-unarchived", "work"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        for folder in ("logs", "data"):  # result payloads, component output: owner-only
            private_dir(self.root / folder)

    def _start_iot_core(self) -> None:
        if self.mqtt is None:
            self.iot = StdoutIotCore(self._stdout)
        else:
            self._outbox = Outbox(self.root / "data" / "outbox.sqlite", self.outbox_limit)
            self.iot = MqttBridge(
                self.mqtt[0], self.mqtt[1], self._outbox, client_id=f"gglocal-{self.thing_name}-{os.getpid()}"
            )
        self.iot.start()

    def _stop_iot_core(self) -> None:
        if self.iot is not None:
            self.iot.stop()
        if self._outbox is not None:
            self._outbox.close()

    def _start_ipc_server(self) -> None:
        path = short_socket_path(self.root, "ipc.socket")
        self.ipc = IpcServer(path, config=self.config, iot=self.iot, on_state=self._state_reported)
        self.ipc.start()

    def _stop_ipc_server(self) -> None:
        if self.ipc is not None:
            self.ipc.stop()
            self._remove_temp_socket_dir(self.ipc.socket_path)

    def _remove_temp_socket_dir(self, socket_path: Path) -> None:
        if socket_path.parent != self.root:
            try:
                socket_path.parent.rmdir()
            except OSError as exc:
                logger.debug("could not remove %s: %s", socket_path.parent, exc)

    def _start_control(self) -> None:
        assert self.ipc is not None
        handlers = {"status": self._cmd_status, "config": self._cmd_config, "stop": self._cmd_stop}
        self._control = ControlServer(short_socket_path(self.root, "gglocal.ctl"), handlers)
        self._control.start()
        write_state_file(
            self.root,
            control_socket=str(self._control.socket_path),
            ipc_socket=str(self.ipc.socket_path),
            pid=str(os.getpid()),
        )

    def _stop_control(self) -> None:
        if self._control is not None:
            self._control.stop()
            self._remove_temp_socket_dir(self._control.socket_path)
        (self.root / "gglocal.json").unlink(missing_ok=True)

    # -- deployment ------------------------------------------------------------------------------
    def deploy(
        self,
        build_dir: Path | str | None = None,
        *,
        recipe_dir: Path | str | None = None,
        artifact_dir: Path | str | None = None,
        update_config: str | Mapping[str, Any] | None = None,
        only: Sequence[str] | None = None,
    ) -> list[str]:
        """Install and start the build's components, dependencies first; returns their names in that order."""
        if build_dir is not None:
            source = BuildSource.from_build_dir(Path(build_dir))
        elif recipe_dir is not None:
            source = BuildSource(Path(recipe_dir), Path(artifact_dir) if artifact_dir else None)
        else:
            raise DeploymentError("deploy needs a build dir, or a recipe dir (and an artifact dir)")
        self.start()
        plan = plan_deployment(load_recipes(source.recipe_dir), only=only, device=self.device)
        updates = parse_update_config(update_config)
        for name in set(updates) - {p.name for p in plan}:
            logger.warning("--update-config names %s, which is not deployed; ignored", name)
        with self._lock:
            for planned in reversed(plan):
                if planned.name in self._runners:
                    self._runners.pop(planned.name).stop()
            for planned in plan:
                install_artifacts(planned.recipe, planned.manifest, source.artifact_dir, self.root)
                self._planned[planned.name] = planned
                self._register_config(planned, updates.get(planned.name, ConfigUpdate()))
            for planned in plan:
                self._runners[planned.name] = self._make_runner(planned)
            for planned in plan:
                self._runners[planned.name].start()
        logger.info("local deployment started: %s", ", ".join(p.name for p in plan))
        return [p.name for p in plan]

    def _register_config(self, planned: PlannedComponent, update: ConfigUpdate) -> None:
        self.config.register(planned.name, planned.recipe.default_configuration)
        if update.reset:
            self.config.reset(planned.name, update.reset)
        if update.merge:
            self.config.merge(planned.name, update.merge)

    def _component_paths(self, name: str) -> ComponentPaths:
        version = str(self._planned[name].recipe.version)
        artifacts, unarchived = artifact_dirs(self.root, name, version)
        configuration = self.config.get(name) if self.config.has(name) else {}
        return ComponentPaths(name, artifacts, unarchived, self.root / "work" / name, configuration)

    def _make_runner(self, planned: PlannedComponent) -> ComponentRunner:
        assert self.ipc is not None
        token = self.ipc.register_component(planned.name)
        socket_path = str(self.ipc.socket_path)
        env = dict(os.environ)
        env.update(
            SVCUID=token,
            AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT=socket_path,
            AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH=socket_path,
            AWS_IOT_THING_NAME=self.thing_name,
            AWS_REGION=self.region,
            AWS_DEFAULT_REGION=self.region,
            GG_ROOT_CA_PATH=str(self.root / "rootCA.pem"),
        )
        name, deps = planned.name, planned.dependencies

        def expand_variables(text: str) -> str:
            context = VariableContext(
                component=self._component_paths(name),
                kernel_root=self.root,
                thing_name=self.thing_name,
                dependencies={d: self._component_paths(d) for d in deps if d in self._planned},
            )
            return expand(text, context)

        spec = ComponentSpec(
            name=name,
            version=str(planned.recipe.version),
            lifecycle=planned.lifecycle,
            work_dir=self.root / "work" / name,
            log_path=self.root / "logs" / f"{name}.log",
            env=env,
            expand=expand_variables,
            processes=self._processes,
        )
        dependencies = [self._runners[d] for d in deps if d in self._runners]
        return ComponentRunner(spec, policy=self.restart_policy, dependencies=dependencies, echo=self.verbose)

    def stop_components(self) -> None:
        """Stop every component in reverse dependency order."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in reversed(runners):
            runner.stop()

    # -- queries and run-time changes ------------------------------------------------------------
    def runner(self, name: str) -> ComponentRunner:
        with self._lock:
            if name not in self._runners:
                raise KeyError(f"component {name} is not deployed; deployed: {sorted(self._runners)}")
            return self._runners[name]

    def state(self, name: str) -> ComponentState:
        return self.runner(name).state

    def states(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            runners = list(self._runners.values())
        return {
            r.name: {"version": r.spec.version, "state": str(r.state), "errors": r.errors} for r in runners
        }

    def wait_for_state(self, name: str, states: Iterable[ComponentState], timeout: float) -> bool:
        return self.runner(name).wait_for(states, timeout)

    def update_config(
        self, name: str, merge: Mapping[str, Any] | None = None, reset: Sequence[str] = ()
    ) -> list[str]:
        """Change a component's configuration at run time (RESET then MERGE); subscribers get events."""
        if not self.config.has(name):
            raise KeyError(f"component {name} has no configuration; deployed: {self.config.components()}")
        changed = list(self.config.reset(name, reset)) if reset else []
        if merge:
            changed += self.config.merge(name, merge)
        return ["/" + "/".join(path) for path in changed]

    def _state_reported(self, component: str, state: str) -> None:
        with self._lock:
            runner = self._runners.get(component)
        if runner is not None:
            runner.report_state(state)

    # -- control commands ------------------------------------------------------------------------
    def _cmd_status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"components": self.states(), "iot": self.iot.status() if self.iot is not None else {}}

    def _cmd_config(self, request: dict[str, Any]) -> dict[str, Any]:
        merge = request.get("merge") or {}
        reset = request.get("reset") or []
        if not isinstance(merge, dict) or not isinstance(reset, list):
            raise ValueError("merge must be an object and reset a list of JSON pointers")
        return {"changed": self.update_config(str(request.get("component")), merge, reset)}

    def _cmd_stop(self, request: dict[str, Any]) -> dict[str, Any]:
        self.stop_requested.set()
        return {}
