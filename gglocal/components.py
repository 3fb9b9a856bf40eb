"""The deployed components of one core: their runners, environment, rendered lifecycles and restarts.

Each component gets an SVCUID, the profile's environment and a ``render`` for its runner: on the Java nucleus
the lifecycle rendered at the deployment (``rerender`` renders it again after a configuration deployment
and says which steps changed); on nucleus lite the script rendered at each start with the configuration of
the moment. ``restart`` asks a running component to restart, or starts a FINISHED or BROKEN one anew (a
deployment is what clears BROKEN).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gglocal.artifacts import artifact_dirs
from gglocal.bindings import dependent_action
from gglocal.configstore import ConfigStore
from gglocal.deployment import PlannedComponent
from gglocal.environment import component_environment
from gglocal.leftovers import ProcessRecord
from gglocal.nucleus import NucleusProfile
from gglocal.render import RenderedLifecycle, RenderedStep, render_classic, render_lite
from gglocal.runner import ComponentRunner, ComponentState, RestartPolicy
from gglocal.server import IpcServer
from gglocal.steps import ComponentSpec
from gglocal.variables import ComponentPaths, VariableContext
from ggrules.semver import Version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreIdentity:
    """What every component of a core shares: root, thing, region, profile, restart policy."""

    root: Path
    thing_name: str
    region: str
    nucleus: NucleusProfile
    policy: RestartPolicy
    echo: bool = False
    processes: ProcessRecord | None = None  # the process groups started, for the next stand-in's cleanup


class ComponentSet:
    """Runners by name, in deployment order; thread-safe."""

    def __init__(self, identity: CoreIdentity, config: ConfigStore, ipc: IpcServer) -> None:
        self.identity = identity
        self._config = config
        self._ipc = ipc
        self._lock = threading.RLock()
        self.planned: dict[str, PlannedComponent] = {}
        self._runners: dict[str, ComponentRunner] = {}
        self._rendered: dict[str, RenderedLifecycle] = {}
        self._bound_stopped: set[str] = set()

    # -- variables and rendering -----------------------------------------------------------------
    def _paths(self, name: str) -> ComponentPaths:
        version = str(self.planned[name].recipe.version)
        artifacts, unarchived = artifact_dirs(self.identity.root, name, version)
        configuration = self._config.get(name) if self._config.has(name) else {}
        return ComponentPaths(name, artifacts, unarchived, self.identity.root / "work" / name, configuration)

    def _context(self, name: str) -> VariableContext:
        deps = self.planned[name].dependencies
        return VariableContext(
            component=self._paths(name),
            kernel_root=self.identity.root,
            thing_name=self.identity.thing_name,
            dependencies={d: self._paths(d) for d in deps if d in self.planned},
        )

    def _render(self, name: str, step: str) -> RenderedStep:
        if self.identity.nucleus.lite_scripts:
            return render_lite(self.planned[name].lifecycle, step, self._context(name))
        with self._lock:
            return self._rendered[name].step(step)

    def rerender(self, name: str) -> set[str]:
        """Render the lifecycle again (Java nucleus: a deployment changed the configuration); the steps
        whose text changed, "Setenv" for the lifecycle's."""
        with self._lock:
            new = render_classic(self.planned[name].lifecycle, self._context(name))
            old, self._rendered[name] = self._rendered[name], new
        return new.changed(old)

    # -- runners ---------------------------------------------------------------------------------
    def add(self, planned: PlannedComponent, *, installed: bool = False) -> ComponentRunner:
        """A runner for ``planned`` (not started), replacing any earlier one's place."""
        identity = self.identity
        name = planned.name
        with self._lock:
            self.planned[name] = planned
            if not identity.nucleus.lite_scripts:
                self._rendered[name] = render_classic(planned.lifecycle, self._context(name))
            token = self._ipc.register_component(name)
            env = component_environment(
                identity.nucleus,
                svcuid=token,
                socket_path=self._ipc.socket_path,
                thing_name=identity.thing_name,
                region=identity.region,
                root_ca=identity.root / "rootCA.pem",
            )
            spec = ComponentSpec(
                name=name,
                version=str(planned.recipe.version),
                lifecycle=planned.lifecycle,
                work_dir=identity.root / "work" / name,
                log_path=identity.root / "logs" / f"{name}.log",
                env=env,
                render=lambda step: self._render(name, step),
                processes=identity.processes,
            )
            dependencies = [self._runners[d] for d in planned.dependencies if d in self._runners]
            runner = ComponentRunner(
                spec,
                policy=identity.policy,
                nucleus=identity.nucleus,
                dependencies=dependencies,
                echo=identity.echo,
                hard_dependencies=lambda: self._hard_dependencies_of(name),
                on_state=self._state_changed,
                installed=installed,
            )
            self._runners[name] = runner
            self._bound_stopped.discard(name)  # started again by whatever added it
        return runner

    def hard_dependents(self, names: Iterable[str]) -> list[str]:
        """Deployed components that depend HARD on any of ``names``, directly or through each other, in
        deployment order: both cores restart them when such a dependency is redeployed (the Java nucleus
        stops and starts dependers; lite's units are BindsTo= theirs)."""
        changed = set(names)
        found: set[str] = set()
        waiting = list(changed)
        while waiting:
            for dependent in self._hard_dependents_of(waiting.pop()):
                if dependent.name not in changed:
                    changed.add(dependent.name)
                    found.add(dependent.name)
                    waiting.append(dependent.name)
        with self._lock:
            return [n for n in self.planned if n in self._runners and n in found]

    def _hard_dependencies_of(self, name: str) -> list[ComponentRunner]:
        with self._lock:
            deps = self.planned[name].recipe.dependencies if name in self.planned else ()
            return [
                self._runners[d.name] for d in deps if d.dependency_type == "HARD" and d.name in self._runners
            ]

    def _hard_dependents_of(self, name: str) -> list[ComponentRunner]:
        with self._lock:
            return [
                self._runners[n]
                for n, planned in self.planned.items()
                if n in self._runners
                and any(d.dependency_type == "HARD" and d.name == name for d in planned.recipe.dependencies)
            ]

    def _state_changed(self, name: str, state: ComponentState) -> None:
        """A runner's state changed: act on its HARD dependents as the profile's core does."""
        with self._lock:
            runner = self._runners.get(name)
        dependents = self._hard_dependents_of(name)
        stopped_by_core = runner is None or runner.stopping
        action = dependent_action(self.identity.nucleus, state, stopped_by_core=stopped_by_core)
        for dependent in dependents if action else ():
            if action == "restart" and dependent.state in (ComponentState.STARTING, ComponentState.RUNNING):
                logger.info("%s: restarting, its HARD dependency %s is %s", dependent.name, name, state)
                dependent.request_restart()
            elif action == "stop" and dependent.alive and not dependent.stopping:
                threading.Thread(target=self._stop_bound, args=(dependent, name, state), daemon=True).start()

    def _stop_bound(self, dependent: ComponentRunner, dependency: str, state: ComponentState) -> None:
        logger.warning(
            "%s: stopped, its HARD dependency %s is %s (nucleus lite: BindsTo=); it starts again at the next"
            " deployment",
            dependent.name,
            dependency,
            state,
        )
        dependent.stop()
        with self._lock:
            if self._runners.get(dependent.name) is dependent:  # not replaced meanwhile by a deployment
                self._bound_stopped.add(dependent.name)

    def take_bound_stopped(self) -> list[str]:
        """Components stopped because a HARD dependency ended (lite), in deployment order; forgotten now."""
        with self._lock:
            names = [
                n
                for n in self.planned
                if n in self._bound_stopped and n in self._runners and not self._runners[n].alive
            ]
            self._bound_stopped.clear()
        return names

    def requirement_conflicts(self, versions: Mapping[str, Version]) -> list[str]:
        """What deployed components (other than those being deployed) say against the new ``versions``."""
        conflicts = []
        with self._lock:
            for name in self._runners:
                if name in versions:
                    continue
                for dep in self.planned[name].recipe.dependencies:
                    if dep.name in versions and not dep.requirement.matches(versions[dep.name]):
                        conflicts.append(
                            f"{name} needs {dep.name} {dep.requirement}, not {versions[dep.name]}"
                        )
        return conflicts

    def stop(self, names: list[str]) -> None:
        """Stop these components (in reverse order) and forget their runners."""
        for name in reversed(names):
            with self._lock:
                runner = self._runners.pop(name, None)
            if runner is not None:
                runner.stop()

    def stop_all(self) -> None:
        """Stop every component in reverse deployment order (runners stay, for their final states)."""
        for runner in reversed(list(self)):
            runner.stop()

    def restart(self, name: str, *, reinstall: bool = False) -> None:
        """Restart a component for a deployment; a FINISHED or BROKEN one starts anew."""
        runner = self.runner(name)
        if runner.alive:
            runner.request_restart(reinstall=reinstall)
            return
        broken = runner.state == ComponentState.BROKEN
        logger.info("%s: %s; starting it again for the deployment", name, runner.state)
        self.add(self.planned[name], installed=not (reinstall or broken)).start()

    def runner(self, name: str) -> ComponentRunner:
        with self._lock:
            if name not in self._runners:
                raise KeyError(f"component {name} is not deployed; deployed: {sorted(self._runners)}")
            return self._runners[name]

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._runners

    def __iter__(self) -> Iterator[ComponentRunner]:
        with self._lock:
            return iter(list(self._runners.values()))

    def states(self) -> dict[str, dict[str, Any]]:
        """Per component: version, state, errors within the last hour, errors in all, restarts."""
        return {
            r.name: {
                "version": r.spec.version,
                "state": str(r.state),
                "errors": r.errors,
                "errors_total": r.errors_total,
                "restarts": r.restarts,
            }
            for r in self
        }
