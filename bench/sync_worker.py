"""Child process of the sync benchmarks: run one mail job to completion, print its figures.

It runs the product's mail sync service as the queue worker does, job after job, until the
backfill's round is complete, like ``bench/memory_worker.py``: each job after the first is the
continuation the one before sent (with the folders the round finished), as the queue would
deliver it. It also counts the worker's
Table Storage requests by kind (a request hook on the table client the services use) and its
Graph requests (the Graph client's own counter). It prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

from azure.data.tables import TableServiceClient

from bench.memory_worker import _high_water_kb
from bench.purge import RequestCounter
from shared.adapters.tables import TableEntityStore
from shared.wiring import services

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.adapters.queues import JobQueue


class ContinuationTap:
    """The job queue, keeping the last job each send carried, so the next run can take it."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self.last: dict[str, Any] | None = None

    def send(self, queue: str, job: Mapping[str, Any], *, delay_s: int = 0) -> None:
        """Send the job as the product would, and keep it."""
        self._queue.send(queue, job, delay_s=delay_s)
        self.last = dict(job)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


def main(job_text: str) -> int:
    """Run the job until its round completes; print seconds, pages, jobs and request counts."""
    job = json.loads(job_text)
    wired = services()
    counter = RequestCounter()
    connection = wired.settings.storage.connection_string
    if connection:
        client = TableServiceClient.from_connection_string(connection, raw_request_hook=counter)
        store = TableEntityStore(client)
        store.ensure_tables()
        # The services build their table store on first use; this one, with the hook, comes first.
        wired.__dict__["tables"] = store
    tap = ContinuationTap(wired.queue)
    # The services build the sync service on first use; it takes this queue, which taps it.
    wired.__dict__["queue"] = tap
    sync = wired.mail_sync
    counter.take()
    started = time.monotonic()
    pages = jobs = 0
    while True:
        stats = sync.run(job)
        jobs += 1
        if stats is None:
            print(json.dumps({"error": "the job ended early"}))
            return 1
        pages += stats.pages
        if stats.complete:
            break
        job = tap.last or job
    seconds = time.monotonic() - started
    figures = {
        "seconds": round(seconds, 3),
        "pages": pages,
        "jobs": jobs,
        "peak_rss_mb": round(_high_water_kb() / 1024, 1),
        "table_requests": counter.take(),
        "graph_requests": wired.graph.counter.requests,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
