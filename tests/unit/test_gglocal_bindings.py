"""What each profile does to the HARD dependents of a component whose state changed."""

from __future__ import annotations

import pytest

from gglocal.bindings import dependent_action
from gglocal.nucleus import CLASSIC, LITE
from gglocal.runner import ComponentState as S


@pytest.mark.parametrize(
    ("state", "classic", "lite"),
    [
        (S.RUNNING, None, None),
        (S.STOPPING, None, None),
        (S.FINISHED, None, "stop"),  # a Run step that ended by itself: its BindsTo= dependents stop
        (S.ERRORED, "restart", "stop"),
        (S.BROKEN, "restart", "stop"),
        (S.INSTALLED, "restart", None),  # the Java nucleus: no longer ready (restarting)
        (S.STARTING, "restart", None),
    ],
)
def test_each_core_acts_on_a_dependency_that_is_no_longer_ready(
    state: S, classic: str | None, lite: str | None
) -> None:
    assert dependent_action(CLASSIC, state, stopped_by_core=False) == classic
    assert dependent_action(LITE, state, stopped_by_core=False) == lite


@pytest.mark.parametrize("state", list(S))
def test_a_stop_the_core_makes_itself_moves_no_dependent(state: S) -> None:
    assert dependent_action(CLASSIC, state, stopped_by_core=True) is None
    assert dependent_action(LITE, state, stopped_by_core=True) is None
