"""The watchdog: ERRORED only where a restart is the cure, at most as often as the core tolerates."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from component.health import WEDGED_EXIT_CODE, RestartBudget, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Core:
    """Stands in for IPC UpdateState (the real call is tested against gglocal): records the states."""

    def __init__(self) -> None:
        self.states: list[str] = []

    def __call__(self, state: str) -> None:
        self.states.append(state)


def test_a_loop_that_keeps_beating_is_never_wedged_however_long_an_outage_lasts() -> None:
    clock = Clock()
    dog = Watchdog(Core(), 10.0, RestartBudget(None), clock=clock)
    for _ in range(100):  # 1,000 s of outage, beating every 10 s minus a little
        clock.now += 9.9
        dog.beat()
        assert dog.check() is None


def test_a_loop_that_stops_beating_or_a_dead_worker_is_wedged() -> None:
    clock = Clock()
    dog = Watchdog(Core(), 10.0, RestartBudget(None), clock=clock)
    clock.now += 10.0
    assert dog.check() == "the run loop has made no progress for 10 s"
    dog.beat()
    worker = threading.Thread(target=lambda: None, name="capture-stream")
    worker.start()
    worker.join()
    dog.watch(worker)
    assert dog.check() == "worker thread(s) capture-stream died"
    assert Watchdog(Core(), 0.0, RestartBudget(None), clock=clock).check() is None  # 0 = never


def test_a_worker_ended_on_purpose_is_forgotten_and_the_others_still_watched() -> None:
    """A source replaced by a live update: its reader thread ends, and that is no reason to restart."""
    dog = Watchdog(Core(), 10.0, RestartBudget(None), clock=Clock())
    replaced = threading.Thread(target=lambda: None, name="capture-stream")
    stop = threading.Event()
    current = threading.Thread(target=stop.wait, name="capture-stream-2")
    for thread in (replaced, current):
        thread.start()
        dog.watch(thread)
    dog.forget(replaced)
    replaced.join()
    assert dog.check() is None
    stop.set()
    current.join()
    assert dog.check() == "worker thread(s) capture-stream-2 died"


def test_wedged_reports_errored_then_exits_when_the_core_does_not_restart_it(tmp_path: Path) -> None:
    core, exits, saved = Core(), [], []
    dog = Watchdog(
        core,
        0.05,
        RestartBudget(tmp_path / "restarts.json"),
        exit_after=0.2,
        on_exit=lambda: saved.append(True),
        exit=exits.append,
    )
    dog.start()
    deadline = time.monotonic() + 10
    while not exits and time.monotonic() < deadline:
        time.sleep(0.05)
    dog.stop()
    assert core.states == ["ERRORED"] and exits == [WEDGED_EXIT_CODE] and saved == [True]
    assert RestartBudget(tmp_path / "restarts.json").left() == 1


def test_the_restart_budget_holds_across_processes_and_forgets_after_an_hour(tmp_path: Path) -> None:
    clock = Clock()
    budget = RestartBudget(tmp_path / "restarts.json", per_hour=2, clock=clock)
    budget.spend()
    clock.now += 1200
    RestartBudget(tmp_path / "restarts.json", per_hour=2, clock=clock).spend()  # a later process
    assert budget.left() == 0
    clock.now += 2500  # the first restart is now more than an hour old
    assert budget.left() == 1


def test_past_the_budget_nothing_is_reported_and_nothing_exits(tmp_path: Path) -> None:
    path = tmp_path / "restarts.json"
    path.write_text(f"[{time.time()}, {time.time()}]")
    core, exits = Core(), []
    dog = Watchdog(core, 0.05, RestartBudget(path), exit_after=0.1, exit=exits.append)
    dog.start()
    time.sleep(1.5)
    dog.stop()
    assert core.states == [] and exits == [] and dog.wedged is not None
