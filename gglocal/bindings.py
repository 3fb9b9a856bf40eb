"""What a core does to a component when a HARD dependency of it goes bad, per profile.

The Java nucleus (``GreengrassService``'s dependency listener): a dependent that is STARTING or RUNNING is
restarted as soon as a HARD dependency is no longer ready (ready: RUNNING, STOPPING or FINISHED), and its
restart waits until the dependency is ready again: a dependency that errors and recovers costs the
dependent one restart; a BROKEN one keeps it waiting.

Nucleus lite (measured: the generated units of a HARD dependency are ``BindsTo=``): when the dependency's
process ends by itself (failed, killed, or its Run step finished) the dependent is stopped, FINISHED, and
systemd restarting the dependency does not start it again; the next deployment does.

A stop the core itself makes (a deployment replacing the dependency, the core stopping) is neither.
"""

from __future__ import annotations

from gglocal.nucleus import NucleusProfile
from gglocal.runner import READY, ComponentState

ENDED = (ComponentState.ERRORED, ComponentState.BROKEN, ComponentState.FINISHED)


def dependent_action(nucleus: NucleusProfile, state: ComponentState, *, stopped_by_core: bool) -> str | None:
    """ "restart" or "stop" for the HARD dependents of a component now in ``state``; None: nothing."""
    if stopped_by_core:
        return None
    if nucleus.hard_dependency_ends == "stop":
        return "stop" if state in ENDED else None
    return "restart" if state not in READY else None
