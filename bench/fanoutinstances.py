"""The timed part of one fan-out benchmark run: stage 1 here, stage 2 in host-like processes.

:func:`time_fanout` starts :data:`INSTANCES` processes standing in for warm host instances, each
with its own clients, and starts the clock only once all of them are ready. It runs stage 1
(:meth:`SyncPlanner.fan_out`) in the calling process and then lets the instances go: each takes
batches of :data:`BATCH_SIZE` messages off ``sync-fanout`` as the host does and runs every
message with :meth:`SyncPlanner.fan_out_page`, a page's successor included. The clock stops when
the last instance finds the queue empty with no page in flight anywhere; the processes agree on
that through a :class:`Rendezvous` of shared values under one lock.

A page that raises :class:`TransientError` is run again, as the host's queue would deliver it
again, at most :data:`STAGE_TWO_ATTEMPTS` times; the failed attempts are counted as retries.

Known limitations: an instance runs the pages of a batch one after another where the host runs
them at once, so a taken batch stays hidden for :data:`HOLD_S` seconds instead of having its
visibility renewed while it runs.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.adapters.queues import BATCH_SIZE, FANOUT_QUEUE, MAIL_SYNC_QUEUE, JobQueue, decode_job
from shared.adapters.tables import TableEntityStore
from shared.errors import TransientError
from shared.sync.connectionstore import ConnectionStore
from shared.sync.planner import SyncPlanner

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from ctypes import c_int
    from multiprocessing.process import BaseProcess
    from multiprocessing.synchronize import Event, Lock

INSTANCES = 2
"""Host instances running stage 2, each a process of its own: one per core here."""
STAGE_TWO_ATTEMPTS = 5
HOLD_S = 600
"""Seconds a taken batch stays hidden: an instance here runs its batch's pages one after another,
where the host runs them at once and keeps renewing their visibility while they run."""


@dataclass(frozen=True, slots=True)
class Timing:
    """One timed run of one method."""

    messages: int
    seconds: float
    retries: int = 0
    copies: int = 0
    """Jobs sent beyond one a connection."""

    @property
    def per_second(self) -> float:
        """Messages enqueued per second of wall time."""
        return self.messages / self.seconds


@dataclass(frozen=True, slots=True)
class Rendezvous:
    """What the instance processes share: the start signal, and pages in flight under a lock."""

    go: Event
    lock: Lock
    busy: c_int
    retries: c_int


def at(moment: datetime) -> datetime:
    """Return ``moment``: bound to it with :func:`functools.partial`, a planner's stopped clock."""
    return moment


def time_fanout(
    connection_string: str, planner: SyncPlanner, jobs: JobQueue, slot: datetime, size: int
) -> Timing:
    """Time stage 1 and every stage 2 message, run by INSTANCES processes, for one slot.

    The instance processes start and build their clients before the clock starts, as warm
    host instances would have; the fan-out's time runs from stage 1 until the last of them
    finds the queue empty with no page in flight.
    """
    queued = jobs.approximate_length(MAIL_SYNC_QUEUE)
    context = multiprocessing.get_context("spawn")
    shared = Rendezvous(
        context.Event(),
        context.Lock(),
        context.Value("i", 0, lock=False),
        context.Value("i", 0, lock=False),
    )
    args = (connection_string, slot.isoformat(), shared)
    instances = [
        context.Process(target=_instance, args=args, daemon=True) for _ in range(INSTANCES)
    ]
    for instance in instances:
        instance.start()
    try:
        # Each instance says it is ready by adding one to busy, then waits for go.
        _wait_for(lambda: shared.busy.value == INSTANCES, instances)
        shared.busy.value = 0
        started = time.perf_counter()
        planner.fan_out()
        shared.go.set()
        _join(instances)
        seconds = time.perf_counter() - started
    finally:
        for instance in instances:
            instance.kill()

    if any(instance.exitcode != 0 for instance in instances):
        message = "a stage 2 instance failed; see its traceback above"
        raise RuntimeError(message)
    sent = jobs.approximate_length(MAIL_SYNC_QUEUE) - queued
    if sent < size:
        message = f"fan-out sent {sent} mail jobs for {size} connections"
        raise RuntimeError(message)
    # More than one a connection: sends the queue client retried after their answer was lost
    # (the workers skip the copies). The rate counts connections, not messages.
    return Timing(size, seconds, shared.retries.value, sent - size)


def _join(instances: Sequence[BaseProcess]) -> None:
    """Wait until every instance has ended, or one has failed: the others would wait forever
    for the pages it held, so they are stopped by the caller and the run reported failed."""
    while any(instance.is_alive() for instance in instances):
        if any(instance.exitcode not in (None, 0) for instance in instances):
            return
        time.sleep(0.05)


def _wait_for(ready: Callable[[], bool], instances: Sequence[BaseProcess]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if time.monotonic() > deadline or any(i.exitcode is not None for i in instances):
            message = "stage 2 instances did not start"
            raise RuntimeError(message)
        time.sleep(0.05)


def _instance(connection_string: str, slot: str, shared: Rendezvous) -> None:
    """One host instance: take batches off ``sync-fanout`` and run stage 2 until all is done.

    A page in flight may still send its successor, so an instance stops only when a receive,
    made under the shared lock, finds nothing while no instance holds a page. As the host's
    queue would, a message whose run raised TransientError is run again (at most
    STAGE_TWO_ATTEMPTS times); its retry claims and sends only what is left.
    """
    tables = TableEntityStore(TableServiceClient.from_connection_string(connection_string))
    jobs = JobQueue(QueueServiceClient.from_connection_string(connection_string))
    store = ConnectionStore(tables, cast("Any", None), cast("Any", None))
    moment = datetime.fromisoformat(slot)
    planner = SyncPlanner(store, jobs, clock=functools.partial(at, moment))
    client = jobs._client(FANOUT_QUEUE)
    with shared.lock:
        shared.busy.value += 1
    shared.go.wait()
    while True:
        with shared.lock:
            batch = list(
                client.receive_messages(
                    messages_per_page=BATCH_SIZE,
                    max_messages=BATCH_SIZE,
                    visibility_timeout=HOLD_S,
                )
            )
            if not batch and shared.busy.value == 0:
                return
            shared.busy.value += len(batch)
        if not batch:
            time.sleep(0.02)
            continue
        for message in batch:
            failed = _run_page(planner, decode_job(message.content))
            client.delete_message(message)
            with shared.lock:
                shared.busy.value -= 1
                shared.retries.value += failed


def _run_page(planner: SyncPlanner, job: dict[str, Any]) -> int:
    """Run one stage 2 message until it succeeds; return how many attempts failed."""
    for attempt in range(STAGE_TWO_ATTEMPTS):
        try:
            planner.fan_out_page(job)
        except TransientError:
            continue
        return attempt
    message = f"stage 2 failed {STAGE_TWO_ATTEMPTS} times for {job}"
    raise RuntimeError(message)
