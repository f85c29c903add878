"""Fire timer-triggered functions on their NCRONTAB schedule, one thread per function.

Each timer function has its own scheduler thread that sleeps until the next slot and then runs
the function in that thread. A per-function lock makes runs singletons, like the real host's
timer lock: a slot that comes while a run (scheduled or started through the admin endpoint) is
still going is skipped, never run in parallel, and the skip is logged.

Known limitations: there is no schedule monitor (``use_monitor``): slots missed while the host
was stopped are not caught up, so ``past_due`` is only true when a run starts more than a second
after its slot (for example on a heavily loaded machine).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from azure.functions.timer import TimerRequest

if TYPE_CHECKING:
    from devstack.host.invocation import InvocationRunner
    from devstack.host.loader import TimerFunction

logger = logging.getLogger(__name__)

PAST_DUE_AFTER = timedelta(seconds=1)


class TimerScheduler:
    """Run one timer function at each slot of its schedule until stopped."""

    def __init__(
        self, function: TimerFunction, runner: InvocationRunner, stop: threading.Event
    ) -> None:
        self.function = function
        self._runner = runner
        self._stop = stop
        self._running = threading.Lock()
        self._last: datetime | None = None
        self._thread = threading.Thread(
            target=self._loop, name=f"timer-{function.name}", daemon=True
        )

    def start(self) -> None:
        """Start the scheduler thread."""
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the scheduler thread to end after a stop."""
        if self._thread.ident is not None:
            self._thread.join(timeout_s)

    def invoke_now(self) -> None:
        """Run the function once in a new thread, waiting for any current run to finish first."""

        def run() -> None:
            with self._running:
                self._invoke(datetime.now(UTC), past_due=False, source="admin")

        threading.Thread(target=run, name=f"timer-admin-{self.function.name}").start()

    def _loop(self) -> None:
        if self.function.run_on_startup:
            self._fire(datetime.now(UTC), source="startup")

        slot = self.function.schedule.next_after(datetime.now(UTC))
        while not self._stop.wait(max(0.0, (slot - datetime.now(UTC)).total_seconds())):
            self._fire(slot, source="schedule")
            after = self.function.schedule.next_after(max(slot, datetime.now(UTC)))
            skipped = self._count_slots(slot, after)
            if skipped:
                logger.info(
                    "timer slots skipped while a run was in progress",
                    extra={"function": self.function.name, "skipped": skipped},
                )
            slot = after

    def _fire(self, slot: datetime, *, source: str) -> None:
        if not self._running.acquire(blocking=False):
            logger.info(
                "timer slot skipped: the previous run is still in progress",
                extra={"function": self.function.name, "slot": slot.isoformat()},
            )
            return
        try:
            late = datetime.now(UTC) - slot
            self._invoke(slot, past_due=late > PAST_DUE_AFTER, source=source)
        finally:
            self._running.release()

    def _invoke(self, slot: datetime, *, past_due: bool, source: str) -> None:
        following = self.function.schedule.next_after(slot)
        status = {
            "Last": self._last.isoformat() if self._last else None,
            "Next": following.isoformat(),
            "LastUpdated": datetime.now(UTC).isoformat(),
        }
        request = TimerRequest(
            past_due=past_due, schedule_status=status, schedule={"AdjustForDST": False}
        )
        self._runner.invoke(
            self.function, request, trigger="timer", source=source, past_due=past_due
        )
        self._last = slot

    def _count_slots(self, slot: datetime, after: datetime) -> int:
        count = 0
        moment = self.function.schedule.next_after(slot)
        while moment < after and count < 1000:
            count += 1
            moment = self.function.schedule.next_after(moment)
        return count
