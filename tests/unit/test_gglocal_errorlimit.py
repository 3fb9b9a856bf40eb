"""When errors make a component BROKEN: the Java nucleus's per-state count with its hour reset, and nucleus
lite's systemd start limit."""

from __future__ import annotations

from gglocal.errorlimit import PerStateErrors, StartLimit, error_limit


def test_java_nucleus_counts_errors_per_state_each_within_the_window_of_the_last() -> None:
    limit = PerStateErrors(max_errors=3, reset_s=3600)
    assert not limit.error("RUNNING", 0)
    assert not limit.error("RUNNING", 3000)
    assert limit.error("RUNNING", 6000)  # 6000 s after the first, but each within an hour of the one before
    spaced = PerStateErrors(max_errors=3, reset_s=3600)
    assert not spaced.error("RUNNING", 0)
    assert not spaced.error("RUNNING", 100)
    assert not spaced.error("RUNNING", 3800)  # an hour after the last: the count starts again
    assert not spaced.error("RUNNING", 3900)
    assert spaced.error("RUNNING", 4000)


def test_java_nucleus_clears_a_state_s_errors_when_it_leaves_it_normally() -> None:
    limit = PerStateErrors(max_errors=3)
    limit.error("STARTING", 0)
    limit.error("STARTING", 1)
    limit.error("RUNNING", 2)
    limit.left("STARTING")  # STARTING -> RUNNING
    assert not limit.error("STARTING", 3)
    assert not limit.error("RUNNING", 4)
    assert limit.error("RUNNING", 5)
    assert limit.start("run", 6)


def test_lite_refuses_the_fourth_start_within_the_interval() -> None:
    limit = StartLimit(burst=3, interval_s=3600)
    assert [limit.start("run", t) for t in (0, 1, 2)] == [True, True, True]
    assert not limit.start("run", 3)
    assert limit.start("install", 3)  # another unit
    assert limit.start("run", 3600)  # a new window
    assert not limit.error("RUNNING", 1)  # errors alone never make it BROKEN: the refused start does
    limit.reset()
    assert all(limit.start("run", 3601 + t) for t in range(3))


def test_profiles_name_their_limit() -> None:
    assert isinstance(error_limit("per-state", 3, 60), PerStateErrors)
    assert isinstance(error_limit("start-limit", 3, 60), StartLimit)
