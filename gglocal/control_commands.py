"""What a running stand-in answers on its control socket (``gglocal.control`` carries the requests).

* ``{"cmd": "status"}`` -> ``{"nucleus": "lite"|"classic", "components": {name: {version, state, errors,
  errors_total, restarts}}, "iot": {broker, connected, spooling,
  delivered, outbox, and classic: spool_bytes, dropped, queue; lite: in_flight, refused_not_connected,
  refused_in_flight, lost_in_flight},
  "deployments": [{id, kind, status, message}]}`` (``errors``: within the last hour).
* ``{"cmd": "config", "component": N, "merge": {...}, "reset": ["/p"], "cloud": false}`` -> a configuration
  deployment, local or (``cloud`` true) as from the cloud (``Core.update_config``):
  ``{"changed": ["/p", ...], "deployment": {"id", "status": "SUCCEEDED"|"FAILED", "message"}}``. A
  deployment a component rejected is answered (``ok`` true) with status FAILED and the nucleus's message;
  an unknown component is an error (``ok`` false).
* ``{"cmd": "deploy", "build_dir": P | "recipe_dir": P, "artifact_dir": P, "only": [N], "update_config": J}``
  -> ``{"deployment": {"id", "status": "IN_PROGRESS"}}`` at once; the outcome shows in ``status``'s
  ``deployments``.
* ``{"cmd": "stop"}`` -> ``{}``, and the stand-in stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gglocal.control import CommandHandler
from gglocal.errors import ConfigurationValidationError

if TYPE_CHECKING:
    from gglocal.core import Core


class ControlCommands:
    """The handlers of one core's control socket."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def table(self) -> dict[str, CommandHandler]:
        return {"status": self.status, "config": self.config, "deploy": self.deploy, "stop": self.stop}

    def status(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._core.status()

    def config(self, request: dict[str, Any]) -> dict[str, Any]:
        merge = request.get("merge") or {}
        reset = request.get("reset") or []
        cloud = request.get("cloud", False)
        if not isinstance(merge, dict) or not isinstance(reset, list):
            raise ValueError("merge must be an object and reset a list of JSON pointers")
        if not isinstance(cloud, bool):
            raise ValueError("cloud must be true or false")
        try:
            changed = self._core.update_config(str(request.get("component")), merge, reset, cloud=cloud)
        except ConfigurationValidationError:
            changed = []
        return {"changed": changed, "deployment": self._core.deployments[-1]}

    def deploy(self, request: dict[str, Any]) -> dict[str, Any]:
        paths = {key: request.get(key) for key in ("build_dir", "recipe_dir", "artifact_dir")}
        only = request.get("only") or []
        update = request.get("update_config")
        if not all(v is None or isinstance(v, str) for v in paths.values()):
            raise ValueError("build_dir, recipe_dir and artifact_dir must be paths (strings)")
        if not isinstance(only, list) or not all(isinstance(n, str) for n in only):
            raise ValueError("only must be a list of component names")
        if update is not None and not isinstance(update, str | dict):
            raise ValueError("update_config must be JSON text or an object")
        if paths["build_dir"] is None and paths["recipe_dir"] is None:
            raise ValueError("deploy needs build_dir or recipe_dir")
        deployment_id = self._core.deploy_in_background(**paths, only=only or None, update_config=update)
        return {"deployment": next(d for d in self._core.deployments if d["id"] == deployment_id)}

    def stop(self, request: dict[str, Any]) -> dict[str, Any]:
        self._core.stop_requested.set()
        return {}
