"""Unit tests for the timer scheduler: singleton runs and run_on_startup."""

import threading
import time
from collections.abc import Callable
from pathlib import Path

from devstack.host.invocation import InvocationRunner
from devstack.host.loader import TimerFunction
from devstack.host.ncrontab import Schedule
from devstack.host.timers import TimerScheduler


class ConcurrencyProbe:
    """A timer function body that records how many runs overlap and how long each takes."""

    def __init__(self, run_s: float) -> None:
        self.run_s = run_s
        self.lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.runs = 0

    def __call__(self, timer: object) -> None:
        with self.lock:
            self.current += 1
            self.runs += 1
            self.peak = max(self.peak, self.current)
        time.sleep(self.run_s)
        with self.lock:
            self.current -= 1


def timer_function(
    probe: ConcurrencyProbe, schedule: str, *, run_on_startup: bool
) -> TimerFunction:
    parsed = Schedule.parse(schedule, function_name="probe")
    return TimerFunction("probe", probe, "timer", False, parsed, run_on_startup)


def wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_timers_slow_run_never_overlaps_the_next_slot():
    """A run longer than the schedule's period skips slots instead of running twice at once."""
    # GIVEN an every-second timer whose body takes 1.5 s
    probe = ConcurrencyProbe(run_s=1.5)
    stop = threading.Event()
    runner = InvocationRunner(Path.cwd(), None)
    scheduler = TimerScheduler(
        timer_function(probe, "* * * * * *", run_on_startup=False), runner, stop
    )

    # WHEN it runs for two runs, while an admin run is also requested
    scheduler.start()
    assert wait_until(lambda: probe.runs >= 1, timeout_s=5)
    scheduler.invoke_now()
    assert wait_until(lambda: probe.runs >= 3, timeout_s=10)
    stop.set()
    scheduler.join(5)
    assert runner.wait_idle(5)

    # THEN no two runs were ever in progress together
    assert probe.peak == 1


def test_timers_run_on_startup_fires_once_at_start():
    """run_on_startup runs the function as soon as the scheduler starts."""
    # GIVEN a yearly timer with run_on_startup
    probe = ConcurrencyProbe(run_s=0)
    stop = threading.Event()
    runner = InvocationRunner(Path.cwd(), None)
    scheduler = TimerScheduler(
        timer_function(probe, "0 0 0 1 1 *", run_on_startup=True), runner, stop
    )

    # WHEN the scheduler starts
    scheduler.start()

    # THEN the function runs once without waiting for its slot
    assert wait_until(lambda: probe.runs == 1, timeout_s=5)
    stop.set()
    scheduler.join(5)
