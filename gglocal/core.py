"""``Core``: the local stand-in of a Greengrass nucleus, wiring IoT Core, IPC, control and components.

    with Core(tmp_path / "gg", mqtt="127.0.0.1:1883", nucleus="lite") as core:
        core.deploy(Path("greengrass-build"))
        core.wait_for_state("com.example.Hello", {ComponentState.RUNNING}, timeout=30)
        core.update_config("com.example.Hello", {"Interval": "5"})  # a local deployment
        core.update_config("com.example.Hello", {"Interval": "6"}, cloud=True)  # as from IoT jobs

``nucleus`` picks the core to behave as ("classic", the Java nucleus, by default; or "lite"): see
:mod:`gglocal.nucleus`. Device layout under ``root``: ``packages/artifacts[-unarchived]/<name>/<version>``,
``work/<name>``, ``logs/<name>.log``, ``data/outbox.sqlite`` (spooling profiles only), the IPC socket
(``ipc.socket`` or lite's ``gg-ipc.socket``, in a short temp dir when the root's path is too long for a
unix socket) and ``gglocal.json`` naming the sockets, the profile and the pid.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from gglocal.artifacts import install_artifacts
from gglocal.broker_watch import BrokerWatch
from gglocal.components import ComponentSet, CoreIdentity
from gglocal.config_deployment import ConfigDeployer, apply_update, new_deployment_id
from gglocal.configstore import ConfigStore
from gglocal.control import ControlServer, read_state_file, write_state_file
from gglocal.control_commands import ControlCommands
from gglocal.deployment import BuildSource, ConfigUpdate, load_recipes, parse_update_config, plan_deployment
from gglocal.errors import ControlError, DeploymentError, GgLocalError
from gglocal.iotcore import IotCore, StdoutIotCore
from gglocal.iotcored import IotcoredBridge
from gglocal.leftovers import ProcessRecord, stop_leftovers
from gglocal.mqtt_bridge import MqttBridge, parse_host_port
from gglocal.nucleus import DEFAULT_NUCLEUS, NucleusProfile, profile
from gglocal.outbox import DEFAULT_LIMIT, Outbox
from gglocal.private import private_dir
from gglocal.recipe import current_platform
from gglocal.runner import ComponentRunner, ComponentState, RestartPolicy
from gglocal.server import IpcServer, short_socket_path
from gglocal.validation import DEFAULT_TIMEOUT_S

logger = logging.getLogger(__name__)


class Core:
    """One stand-in nucleus. ``start()`` is implied by ``deploy()``; ``stop()`` undoes ``start()``."""

    def __init__(
        self,
        root: Path | str,
        *,
        nucleus: str | NucleusProfile = DEFAULT_NUCLEUS,
        mqtt: str | tuple[str, int] | None = None,
        thing_name: str = "gglocal-thing",
        region: str | None = None,
        verbose: bool = False,
        spool_bytes: int = DEFAULT_LIMIT,
        restart_policy: RestartPolicy | None = None,
        validation_timeout_s: float = DEFAULT_TIMEOUT_S,
        broker_warn_after_s: float = 5.0,
        broker_warn_every_s: float = 60.0,
        device: Mapping[str, str] | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self.nucleus = profile(nucleus)
        self.mqtt = parse_host_port(mqtt) if isinstance(mqtt, str) else mqtt
        self.thing_name = thing_name
        self.region = region or os.environ.get("AWS_REGION") or "us-east-1"
        self.verbose = verbose
        self.spool_bytes = spool_bytes
        delay = self.nucleus.restart_delay_s
        self.restart_policy = restart_policy or RestartPolicy(base_delay_s=delay, max_delay_s=delay)
        self.validation_timeout_s = validation_timeout_s
        self.broker_warnings = (broker_warn_after_s, broker_warn_every_s)
        self.device = dict(device or current_platform())
        self.config = ConfigStore()
        self.stop_requested = threading.Event()
        self.deployments: list[dict[str, Any]] = []
        self._stdout = stdout
        self._outbox: Outbox | None = None
        self.iot: IotCore | None = None
        self.ipc: IpcServer | None = None
        self._control: ControlServer | None = None
        self._watch: BrokerWatch | None = None
        self._components: ComponentSet | None = None
        self._config_deployer: ConfigDeployer | None = None
        self._processes: ProcessRecord | None = None
        self._lock = threading.RLock()
        self._deploying = threading.Lock()
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
        self._start_broker_watch()
        self._start_ipc_server()
        self._start_components()
        self._start_control()
        self._started = True
        logger.info("local Greengrass core (%s) started in %s", self.nucleus.name, self.root)

    def stop(self) -> None:
        if not self._started:
            return
        self.stop_components()
        if self._processes is not None:
            self._processes.close()
        self._stop_control()
        self._stop_ipc_server()
        self._stop_broker_watch()
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
        client_id = f"gglocal-{self.thing_name}-{os.getpid()}"
        if self.mqtt is None:
            self.iot = StdoutIotCore(self._stdout)
        elif self.nucleus.spools_offline:
            self._outbox = Outbox(self.root / "data" / "outbox.sqlite", self.spool_bytes)
            self.iot = MqttBridge(self.mqtt[0], self.mqtt[1], self._outbox, client_id=client_id)
        else:
            self.iot = IotcoredBridge(
                self.mqtt[0],
                self.mqtt[1],
                client_id=client_id,
                max_in_flight=self.nucleus.max_qos1_in_flight,
                in_flight_bytes=self.nucleus.qos1_in_flight_bytes,
            )
        self.iot.start()

    def _stop_iot_core(self) -> None:
        if self.iot is not None:
            self.iot.stop()
        if self._outbox is not None:
            self._outbox.close()

    def _start_broker_watch(self) -> None:
        if isinstance(self.iot, MqttBridge):
            after, every = self.broker_warnings
            self._watch = BrokerWatch(self.iot, warn_after_s=after, warn_every_s=every)
            self._watch.start()

    def _stop_broker_watch(self) -> None:
        if self._watch is not None:
            self._watch.stop()

    def _start_ipc_server(self) -> None:
        path = short_socket_path(self.root, self.nucleus.ipc_socket)
        self.ipc = IpcServer(
            path,
            config=self.config,
            iot=self.iot,
            on_state=self._state_reported,
            nucleus=self.nucleus,
            thing_name=self.thing_name,
        )
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

    def _start_components(self) -> None:
        assert self.ipc is not None
        identity = CoreIdentity(
            self.root,
            self.thing_name,
            self.region,
            self.nucleus,
            self.restart_policy,
            self.verbose,
            processes=self._processes,
        )
        self._components = ComponentSet(identity, self.config, self.ipc)
        validation = self.ipc.operations.validation
        self._config_deployer = ConfigDeployer(
            self.config, self.nucleus, validation, self._components, self.validation_timeout_s
        )

    def _start_control(self) -> None:
        assert self.ipc is not None
        self._control = ControlServer(
            short_socket_path(self.root, "gglocal.ctl"), ControlCommands(self).table()
        )
        self._control.start()
        write_state_file(
            self.root,
            control_socket=str(self._control.socket_path),
            ipc_socket=str(self.ipc.socket_path),
            pid=str(os.getpid()),
            nucleus=self.nucleus.name,
            validation_timeout_s=str(self.validation_timeout_s),
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
        deployment_id: str | None = None,
    ) -> list[str]:
        """Install and start the build's components, dependencies first; returns their names in that order.
        On a running core this is a further deployment: the components it names are replaced (running
        components that depend HARD on them restart, as on both cores), the others keep running.

        Raises DeploymentError (RecipeError when the profile's core refuses a recipe; on the Java nucleus
        ConfigurationValidationError when a running component rejects the configuration it would get)."""
        deployment_id = deployment_id or new_deployment_id()
        try:
            if build_dir is not None:
                source = BuildSource.from_build_dir(Path(build_dir))
            elif recipe_dir is not None:
                source = BuildSource(Path(recipe_dir), Path(artifact_dir) if artifact_dir else None)
            else:
                raise DeploymentError("deploy needs a build dir, or a recipe dir (and an artifact dir)")
            self.start()
            with self._deploying:  # one deployment at a time, as both cores queue them
                names = self._deploy(source, parse_update_config(update_config), only, deployment_id)
        except DeploymentError as exc:
            self._record(deployment_id, "deploy", "FAILED", str(exc))
            raise
        self._record(deployment_id, "deploy", "SUCCEEDED", "")
        logger.info("local deployment %s started: %s", deployment_id, ", ".join(names))
        return names

    def deploy_in_background(self, **deployment: Any) -> str:
        """Queue a further deployment (keywords of ``deploy``) on the running core; returns its id at once.
        Its outcome appears in ``deployments`` (IN_PROGRESS, then SUCCEEDED or FAILED with the reason)."""
        deployment_id = new_deployment_id()
        self._record(deployment_id, "deploy", "IN_PROGRESS", "")

        def run() -> None:
            try:
                self.deploy(**deployment, deployment_id=deployment_id)
            except GgLocalError as exc:
                logger.error("deployment %s failed: %s", deployment_id, exc)
                self._record(deployment_id, "deploy", "FAILED", str(exc))
            except Exception as exc:  # a deployment thread always records an outcome
                logger.exception("deployment %s failed unexpectedly", deployment_id)
                self._record(deployment_id, "deploy", "FAILED", f"internal error: {exc}")

        threading.Thread(target=run, name=f"deployment-{deployment_id[:8]}", daemon=True).start()
        return deployment_id

    def _deploy(
        self,
        source: BuildSource,
        updates: Mapping[str, ConfigUpdate],
        only: Sequence[str] | None,
        deployment_id: str,
    ) -> list[str]:
        components, deployer = self._parts()
        recipes = load_recipes(source.recipe_dir, self.nucleus)
        plan = plan_deployment(recipes, only=only, device=self.device, nucleus=self.nucleus)
        for name in set(updates) - {p.name for p in plan}:
            logger.warning("--update-config names %s, which is not deployed; ignored", name)
        conflicts = components.requirement_conflicts({p.name: p.recipe.version for p in plan})
        if conflicts:
            raise DeploymentError(
                "version requirements of deployed components conflict: " + "; ".join(conflicts)
            )
        with self._lock:
            # a running component keeping its version is asked first (Java nucleus); a redeployment starts
            # from the recipe's defaults, so the proposal is a RESET of everything, then the update
            same_version = {
                p.name: updates.get(p.name, ConfigUpdate())
                for p in plan
                if p.name in components and components.runner(p.name).spec.version == str(p.recipe.version)
            }
            proposals = {n: ConfigUpdate(u.merge, ("", *u.reset)) for n, u in same_version.items()}
            deployer.validate(deployment_id, proposals)
            dependents = components.hard_dependents(p.name for p in plan if p.name in components)
            components.stop([*[p.name for p in plan if p.name in components], *dependents])
            for planned in plan:
                archives = self.nucleus.installs_archives
                install_artifacts(
                    planned.recipe, planned.manifest, source.artifact_dir, self.root, archives=archives
                )
                self.config.register(planned.name, planned.recipe.default_configuration)
                apply_update(
                    self.config, self.nucleus, planned.name, updates.get(planned.name, ConfigUpdate())
                )
            runners = [components.add(planned) for planned in plan]
            for runner in runners:
                runner.start()
            for name in dependents:
                logger.info("%s: restarting, a HARD dependency was redeployed", name)
                components.add(components.planned[name], installed=True).start()
            for name in components.take_bound_stopped():  # lite: the deployment starts its units again
                if name not in dependents and name not in {p.name for p in plan}:
                    logger.info("%s: starting again, stopped with its HARD dependency", name)
                    components.add(components.planned[name], installed=True).start()
        return [p.name for p in plan]

    def update_config(
        self,
        name: str,
        merge: Mapping[str, Any] | None = None,
        reset: Sequence[str] = (),
        *,
        cloud: bool = False,
    ) -> list[str]:
        """A configuration-only deployment (RESET then MERGE) as the profile's core carries out a local one
        (or, ``cloud``, one from the cloud: lite restarts the component); returns the changed keys as JSON
        pointers. On the Java nucleus a component that rejects it (or does not report in time) fails it with
        ConfigurationValidationError and keeps its configuration."""
        if not self.config.has(name):
            raise KeyError(f"component {name} has no configuration; deployed: {self.config.components()}")
        _, deployer = self._parts()
        deployment_id = new_deployment_id()
        kind = f"{'cloud ' if cloud else ''}config {name}"
        update = ConfigUpdate(dict(merge or {}), tuple(reset))
        try:
            changed = deployer.deploy(name, update, deployment_id, cloud=cloud)
        except DeploymentError as exc:
            self._record(deployment_id, kind, "FAILED", str(exc))
            raise
        self._record(deployment_id, kind, "SUCCEEDED", "")
        return changed

    def _record(self, deployment_id: str, kind: str, status: str, message: str) -> None:
        """The deployment's outcome, replacing an earlier one of the same id; the last ten are kept."""
        entry = {"id": deployment_id, "kind": kind, "status": status, "message": message}
        with self._lock:
            others = [d for d in self.deployments if d["id"] != deployment_id]
            self.deployments = [*others[-9:], entry]

    def _parts(self) -> tuple[ComponentSet, ConfigDeployer]:
        if self._components is None or self._config_deployer is None:
            raise DeploymentError("the core is not started")
        return self._components, self._config_deployer

    def stop_components(self) -> None:
        """Stop every component in reverse dependency order."""
        if self._components is not None:
            self._components.stop_all()

    # -- queries and run-time changes ------------------------------------------------------------
    def runner(self, name: str) -> ComponentRunner:
        if self._components is None:
            raise KeyError(f"component {name} is not deployed; the core is not started")
        return self._components.runner(name)

    def state(self, name: str) -> ComponentState:
        return self.runner(name).state

    def states(self) -> dict[str, dict[str, Any]]:
        """Per component: version, state, errors (within the last hour), errors_total, restarts."""
        return {} if self._components is None else self._components.states()

    def iot_status(self) -> dict[str, Any]:
        """The IoT Core side: the broker, whether it is connected, the outbox's depth and limit, and the
        bridge's own counters and any outbox fault (``queue``). Lite (no spooler): ``outbox`` 0, what is in
        flight and the publishes refused while not connected or with no room in flight."""
        if self.iot is None:
            return {}
        status = dict(self.iot.status())
        if isinstance(self.iot, IotcoredBridge):
            return {**status, "outbox": 0}
        if not isinstance(self.iot, MqttBridge):
            return {**status, "broker": None, "connected": None, "outbox": 0}
        outbox = self.iot.outbox
        queue = status.pop("outbox", {})
        return {
            **status,
            "outbox": len(outbox),
            "spool_bytes": outbox.limit,
            "dropped": outbox.dropped,
            "queue": queue,
        }

    def status(self) -> dict[str, Any]:
        """Everything ``gglocal status`` shows: profile, components, IoT Core, recent deployments."""
        return {
            "nucleus": self.nucleus.name,
            "components": self.states(),
            "iot": self.iot_status(),
            "deployments": list(self.deployments),
        }

    def wait_for_state(self, name: str, states: Iterable[ComponentState], timeout: float) -> bool:
        return self.runner(name).wait_for(states, timeout)

    def _state_reported(self, component: str, state: str) -> None:
        if self._components is not None and component in self._components:
            self._components.runner(component).report_state(state)
