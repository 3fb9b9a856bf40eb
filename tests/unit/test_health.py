"""When the component tells the core ERRORED or RUNNING: a trouble clock, driven here by a manual clock."""

from __future__ import annotations

from component.health import LifecycleReporter

from ..helpers import RecordingStateSender


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_errored_only_after_the_trouble_lasted_long_enough_and_only_once() -> None:
    clock, sender = Clock(), RecordingStateSender()
    reporter = LifecycleReporter(sender, 30.0, clock)
    reporter.trouble("agent unreachable")
    clock.now += 29.9
    reporter.trouble("agent unreachable")
    assert sender.states == []
    clock.now += 0.1
    reporter.trouble("agent unreachable")
    clock.now += 60
    reporter.trouble("agent unreachable")
    assert sender.states == ["ERRORED"] and reporter.reported == "ERRORED"


def test_a_classified_frame_stops_the_clock_and_reports_running_after_errored() -> None:
    clock, sender = Clock(), RecordingStateSender()
    reporter = LifecycleReporter(sender, 10.0, clock)
    reporter.trouble("no frame")
    clock.now += 9
    reporter.classified()  # the clock starts again at the next trouble
    reporter.trouble("no frame")
    clock.now += 9
    reporter.trouble("no frame")
    assert sender.states == []
    clock.now += 1
    reporter.trouble("no frame")
    reporter.classified()
    reporter.classified()
    assert sender.states == ["ERRORED", "RUNNING"]


def test_zero_never_reports_errored() -> None:
    clock, sender = Clock(), RecordingStateSender()
    reporter = LifecycleReporter(sender, 0.0, clock)
    reporter.trouble("agent unreachable")
    clock.now += 1e6
    reporter.trouble("agent unreachable")
    reporter.classified()
    assert sender.states == []


def test_a_failed_report_is_tried_again_and_never_raises() -> None:
    clock, sender = Clock(), RecordingStateSender(failures=1)
    reporter = LifecycleReporter(sender, 5.0, clock)
    reporter.trouble("x")
    clock.now += 5
    reporter.trouble("x")  # UpdateState fails: logged, the core still believes RUNNING
    assert sender.states == [] and reporter.reported == "RUNNING"
    reporter.trouble("x")
    assert sender.states == ["ERRORED"]
