"""A configuration-only deployment (``gglocal config``, ``Core.update_config``), as each core carries it out.

Java nucleus: the proposed configuration (RESET to defaults, then MERGE) is first sent to a component that
subscribed to validation, and a rejection or a missing report fails the deployment with the old
configuration kept (``gglocal.validation``). Then it is applied (one event per changed key) and the
lifecycle rendered again: a changed Install reinstalls the component, any other changed step or Setenv
restarts it (Shutdown excepted), a BROKEN one is reinstalled (GenericExternalService's config watcher). A
cloud deployment is carried out the same way.

Nucleus lite: no validation; RESET deletes the keys without an event, MERGE is written one key at a time with
an event after each. A local deployment (ggl-cli, IPC CreateLocalDeployment) stops there: the running
component gets the events and nothing restarts (measured), a BROKEN one stays BROKEN. A cloud deployment
(``cloud=True``: IoT jobs) may stop and restart the component instead; the stand-in takes that strict case
every time, so that a component is tested against it (``NucleusProfile.cloud_config_restarts``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from gglocal.components import ComponentSet
from gglocal.configstore import ConfigStore, KeyPath
from gglocal.deployment import ConfigUpdate
from gglocal.nucleus import NucleusProfile
from gglocal.runner import ComponentState
from gglocal.validation import ValidationHub

logger = logging.getLogger(__name__)


def new_deployment_id() -> str:
    return str(uuid.uuid4())


def apply_update(
    config: ConfigStore, nucleus: NucleusProfile, name: str, update: ConfigUpdate
) -> list[KeyPath]:
    """RESET then MERGE, the profile's way; the changed key paths."""
    changed: list[KeyPath] = []
    if update.reset:
        deletes = nucleus.reset_deletes
        changed += config.reset(name, update.reset, restore_defaults=not deletes, notify=not deletes)
    if update.merge:
        changed += config.merge(name, update.merge, key_by_key=nucleus.merges_key_by_key)
    return changed


class ConfigDeployer:
    """Carries out configuration deployments on running components."""

    def __init__(
        self,
        config: ConfigStore,
        nucleus: NucleusProfile,
        validation: ValidationHub,
        components: ComponentSet,
        timeout_s: float,
    ) -> None:
        self._config = config
        self._nucleus = nucleus
        self._validation = validation
        self._components = components
        self.timeout_s = timeout_s

    def validate(self, deployment_id: str, updates: Mapping[str, ConfigUpdate]) -> None:
        """Java nucleus: ask the running components whose configuration would change (and not their
        version) whether it is valid; raises ConfigurationValidationError."""
        if not self._nucleus.validates_configuration:
            return
        proposals = {}
        for name, update in updates.items():
            if not self._config.has(name):
                continue
            proposed = self._config.preview(name, update.merge, update.reset)
            if proposed != self._config.get(name):
                proposals[name] = proposed
        if proposals:
            logger.info("deployment %s: validating the configuration of %s", deployment_id, sorted(proposals))
            self._validation.validate(deployment_id, proposals, self.timeout_s)

    def deploy(
        self, name: str, update: ConfigUpdate, deployment_id: str, *, cloud: bool = False
    ) -> list[str]:
        """Validate, apply, restart as the core would for a local (or, ``cloud``, a cloud) deployment; the
        changed keys as JSON pointers."""
        self.validate(deployment_id, {name: update})
        changed = apply_update(self._config, self._nucleus, name, update)
        if changed and name in self._components:
            self._restart(name, cloud=cloud)
        return ["/" + "/".join(path) for path in changed]

    def _restart(self, name: str, *, cloud: bool) -> None:
        nucleus = self._nucleus
        runner = self._components.runner(name)
        if nucleus.cloud_config_restarts if cloud else nucleus.local_config_restarts:
            logger.info("%s: configuration deployed; restarting it (as nucleus lite may)", name)
            runner.reset_limits()
            self._components.restart(name)
            return
        if nucleus.lite_scripts:  # lite renders the scripts at each start: nothing to compare now
            logger.info("%s: configuration deployed live, no restart (as nucleus lite does)", name)
            return
        steps = self._components.rerender(name) - {"Shutdown"}
        if not steps:
            return
        reinstall = "Install" in steps or runner.state == ComponentState.BROKEN
        logger.info(
            "%s: the configuration changed its rendered %s; %s",
            name,
            ", ".join(sorted(steps)),
            "reinstalling it" if reinstall else "restarting it",
        )
        self._components.restart(name, reinstall=reinstall)
