"""Benchmark of the purge power tool ("remove all my synced emails") against a real Azurite.

One user's mailbox of N emails is stored through :meth:`EmailStore.save`, the way sync stores
it, its rows written in batches (:mod:`bench.purgeseed`); every fifth email is also held by a
second user, so the purge keeps it (without the first user as holder) instead of removing it.
Each run then purges the first user's mail with the product's own :class:`PurgeJobs`:
``start`` records the job and sends it to the ``purge`` queue, and every delivery taken off that
queue is decoded as the host does (base64, then :func:`decode_job`) and run, until the queue is
empty and the job ``completed``. A delivery works through at most 20 batches of 100 items and
re-queues itself, as in production.

The baseline, measured in the same run, deletes exactly the entities the purge deleted (found by
listing the email tables before and after it), put back beforehand, straight from Table Storage
in batched transactions of up to 100 entities of one partition: the floor for this storage
design. Before the next run the deleted entities are put back again, so every run purges the
same mailbox. Table requests are counted with a request hook on the table client, so the figures
also say how many Table Storage requests the purge makes per email.

Known limitations: Azurite is one Node.js process sharing the machine with this one, so seconds
are not Azure's; the ratio of purge to baseline on the same emulator is the figure to compare.
Bodies are about 2 KB and stay in the table row, so no blob is deleted; an email whose body moved
to Blob Storage costs one more request per moved field.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from bench.purgeseed import OWNER, SHARED_EVERY, seed_mailbox
from devstack.azurite import Azurite, start_azurite
from devstack.host.queues import decode_body
from shared.adapters.blobs import BlobBodyStore
from shared.adapters.queues import PURGE_POISON_QUEUE, PURGE_QUEUE, JobQueue, decode_job
from shared.adapters.tables import TableEntityStore
from shared.audit.log import AuditLog
from shared.power.purge import PurgeJobs, PurgeState
from shared.sync.connections import MAIL, connection_key
from shared.sync.emailrows import EMAILS, HOLDERS, INBOX, INDEX, ITEMS
from shared.sync.store import EmailStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from azure.core.pipeline import PipelineRequest

EMAIL_TABLES = (EMAILS, HOLDERS, ITEMS, INDEX, INBOX)
"""The tables a purge of mail deletes from; listed before and after each purge."""
KEEP_ALIVE_S = 120
"""Seconds Azurite keeps an idle connection: longer than any pause between a client's requests."""
RESTORE_WORKERS = 4

Key = tuple[str, str, str]
"""Table, PartitionKey, RowKey."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure: the mailbox size, runs, and the time budget for runs after the first."""

    name: str
    emails: int
    runs: int
    budget_s: float


STANDARD = Plan(name="standard", emails=3_000, runs=3, budget_s=2 * 60)
QUICK = Plan(name="quick", emails=300, runs=1, budget_s=0)


class RequestCounter:
    """Counts the requests of the table clients by kind (query, read, write, delete, batch)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(self, request: PipelineRequest[Any]) -> None:
        http = request.http_request
        path = http.url.split("?", 1)[0]
        if http.method == "GET":
            kind = "query" if "filter=" in http.url or path.endswith("()") else "read"
        elif http.method == "DELETE":
            kind = "delete"
        else:
            kind = "batch" if path.endswith("$batch") else "write"
        with self._lock:
            self.counts[kind] += 1

    def take(self) -> dict[str, int]:
        """Return the counts since the last call and start again from zero."""
        with self._lock:
            counts, self.counts = dict(self.counts), Counter()
        return counts


@dataclass(frozen=True, slots=True)
class Run:
    """One timed purge and its baseline."""

    purge_seconds: float
    deliveries: int
    purge_requests: dict[str, int]
    baseline_seconds: float
    baseline_requests: int


@dataclass(frozen=True, slots=True)
class Result:
    """The medians over the runs, and every run."""

    emails: int
    kept_shared: int
    entities_deleted: dict[str, int]
    seed_seconds: float
    runs: int
    purge_seconds: float
    emails_per_second: float
    table_requests_per_email: float
    baseline_seconds: float
    baseline_entities_per_second: float
    baseline_requests: int
    ratio: float
    every_run: list[dict[str, Any]]


def run_purge_bench(plan: Plan, out: Path) -> Result:
    """Start Azurite, measure the plan, print a table and write the JSON."""
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as workdir:
        azurite = start_azurite(Path(workdir), keep_alive_s=KEEP_ALIVE_S)
        try:
            result = _measure(azurite, plan)
        finally:
            azurite.stop()
    _print_table(plan, result)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "plan": plan.name,
        "cpus": os.cpu_count(),
        "measuredAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": asdict(result),
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return result


@dataclass(frozen=True, slots=True)
class Rig:
    """The product's collaborators on one Azurite, and the raw clients the benchmark uses."""

    service: TableServiceClient
    tables: TableEntityStore
    blobs: BlobBodyStore
    purges: PurgeJobs
    deliveries: QueueClient
    counter: RequestCounter


def _rig(azurite: Azurite) -> Rig:
    counter = RequestCounter()
    text = azurite.connection_string
    service = TableServiceClient.from_connection_string(text, raw_request_hook=counter)
    tables = TableEntityStore(service)
    tables.ensure_tables()
    blobs = BlobBodyStore(BlobServiceClient.from_connection_string(text))
    blobs.ensure_container()
    queues = QueueServiceClient.from_connection_string(text)
    jobs = JobQueue(queues)
    jobs.ensure_queues((PURGE_QUEUE, PURGE_POISON_QUEUE))
    store = EmailStore(tables, blobs)
    purges = PurgeJobs(
        tables, jobs, {MAIL: store}, connection_key=connection_key, audit=AuditLog(tables)
    )
    # A raw client: bodies arrive as the base64 text on the queue and are decoded as the host does.
    deliveries = queues.get_queue_client(PURGE_QUEUE)
    return Rig(service, tables, blobs, purges, deliveries, counter)


def _measure(azurite: Azurite, plan: Plan) -> Result:
    rig = _rig(azurite)
    tenant = str(uuid.uuid4())
    started = time.perf_counter()
    seeded = seed_mailbox(rig.service, rig.blobs, tenant, plan.emails)
    seed_seconds = time.perf_counter() - started
    before = _entities(rig.service)
    print(
        f"seeded {plan.emails:,} emails ({len(before):,} entities) in {seed_seconds:.1f} s: "
        f"{seeded.checked} through EmailStore.save, the rest as its recorded rows in "
        f"{seeded.transactions:,} transactions"
    )

    runs: list[Run] = []
    deleted: set[Key] = set()
    deadline, last_run_s = time.monotonic() + plan.budget_s, 0.0
    for number in range(plan.runs):
        if number > 0 and time.monotonic() + last_run_s > deadline:
            print(f"  run {number + 1}/{plan.runs} skipped: it would not fit in the time budget")
            break
        run_started = time.monotonic()
        run, gone = _one_run(rig, tenant, plan.emails, before, deleted)
        if deleted and gone != deleted:
            message = "the purge deleted other entities than in the first run"
            raise RuntimeError(message)
        deleted = gone
        last_run_s = time.monotonic() - run_started
        runs.append(run)
        print(
            f"  run {number + 1}/{plan.runs}: purge {run.purge_seconds:.1f} s "
            f"({sum(run.purge_requests.values()):,} table requests, {run.deliveries} deliveries), "
            f"baseline {run.baseline_seconds:.1f} s ({run.baseline_requests:,} transactions)"
        )
    return _summarise(plan, seed_seconds, deleted, runs)


def _one_run(
    rig: Rig, tenant: str, emails: int, before: dict[Key, dict[str, Any]], deleted: set[Key]
) -> tuple[Run, set[Key]]:
    """Put back what the last run deleted, purge, put it back, delete it in batches."""
    _restore(rig.tables, before, deleted)
    rig.counter.take()
    purge_seconds, delivered = _time_purge(rig.purges, rig.deliveries, tenant, emails)
    purge_requests = rig.counter.take()
    gone = before.keys() - _entities(rig.service).keys()
    _restore(rig.tables, before, gone)
    rig.counter.take()
    baseline_seconds = _time_baseline(rig.service, gone)
    baseline_requests = sum(rig.counter.take().values())
    run = Run(purge_seconds, delivered, purge_requests, baseline_seconds, baseline_requests)
    return run, gone


def _time_purge(
    purges: PurgeJobs, deliveries: QueueClient, tenant: str, emails: int
) -> tuple[float, int]:
    """Start a purge and run every delivery of the ``purge`` queue until it is empty."""
    started = time.perf_counter()
    job = purges.start(tenant, OWNER, MAIL, OWNER)
    delivered = 0
    while True:
        batch = list(deliveries.receive_messages(messages_per_page=1, max_messages=1))
        if not batch:
            break
        for message in batch:
            purges.run(decode_job(decode_body(message.content, "base64")))
            deliveries.delete_message(message)
            delivered += 1
    seconds = time.perf_counter() - started
    finished = purges.get(tenant, job.job_id)
    shared = _shared(emails)
    expected = {"removed": emails - shared, "keptShared": shared}
    if finished is None or finished.state != PurgeState.COMPLETED or finished.counts != expected:
        problem = f"purge ended as {finished}; expected completed with {expected}"
        raise RuntimeError(problem)
    return seconds, delivered


def _shared(emails: int) -> int:
    """How many of the seeded emails OTHER holds too: numbers 0, 5, 10, ..."""
    return -(-emails // SHARED_EVERY)


def _entities(service: TableServiceClient) -> dict[Key, dict[str, Any]]:
    """Every entity of the email tables, by table and keys."""
    found: dict[Key, dict[str, Any]] = {}
    for table in EMAIL_TABLES:
        for entity in service.get_table_client(table).list_entities(results_per_page=1000):
            found[table, entity["PartitionKey"], entity["RowKey"]] = dict(entity)
    return found


def _partitions(keys: Iterable[Key]) -> dict[tuple[str, str], list[Key]]:
    grouped: dict[tuple[str, str], list[Key]] = defaultdict(list)
    for key in sorted(keys):
        grouped[key[0], key[1]].append(key)
    return grouped


def _restore(tables: TableEntityStore, before: dict[Key, dict[str, Any]], keys: set[Key]) -> None:
    """Put the given entities back as they were, in batched transactions."""

    def restore(group: tuple[tuple[str, str], list[Key]]) -> None:
        (table, _), members = group
        tables.upsert_batch(table, [before[key] for key in members])

    with ThreadPoolExecutor(max_workers=RESTORE_WORKERS) as pool:
        list(pool.map(restore, _partitions(keys).items()))


def _time_baseline(service: TableServiceClient, keys: set[Key]) -> float:
    """Delete the entities in transactions of up to 100 of one partition, one after another."""
    groups = _partitions(keys)
    clients = {table: service.get_table_client(table) for table in EMAIL_TABLES}
    started = time.perf_counter()
    for (table, _), members in groups.items():
        for first in range(0, len(members), 100):
            operations: list[Any] = [
                ("delete", {"PartitionKey": pk, "RowKey": rk})
                for _, pk, rk in members[first : first + 100]
            ]
            clients[table].submit_transaction(operations)
    return time.perf_counter() - started


def _summarise(plan: Plan, seed_seconds: float, deleted: set[Key], runs: list[Run]) -> Result:
    def median(value: Callable[[Run], float]) -> float:
        return statistics.median(value(run) for run in runs)

    purge_s = median(lambda run: run.purge_seconds)
    baseline_s = median(lambda run: run.baseline_seconds)
    requests = median(lambda run: sum(run.purge_requests.values()))
    by_table = Counter(table for table, _, _ in deleted)
    return Result(
        emails=plan.emails,
        kept_shared=_shared(plan.emails),
        entities_deleted={table: by_table[table] for table in EMAIL_TABLES},
        seed_seconds=round(seed_seconds, 2),
        runs=len(runs),
        purge_seconds=round(purge_s, 2),
        emails_per_second=round(plan.emails / purge_s, 1),
        table_requests_per_email=round(requests / plan.emails, 2),
        baseline_seconds=round(baseline_s, 2),
        baseline_entities_per_second=round(len(deleted) / baseline_s, 1),
        baseline_requests=round(median(lambda run: run.baseline_requests)),
        ratio=round(purge_s / baseline_s, 1),
        every_run=[asdict(run) for run in runs],
    )


def _print_table(plan: Plan, r: Result) -> None:
    print()
    print(f"purge on Azurite ({plan.name}): medians; ratio = purge time / batched-delete time")
    deleted = sum(r.entities_deleted.values())
    print(
        "emails | kept shared | runs | purge s | emails/s | table requests/email"
        " | entities | baseline s | baseline transactions | ratio"
    )
    cells = (
        f"{r.emails:,}",
        f"{r.kept_shared:,}",
        f"{r.runs}",
        f"{r.purge_seconds:.1f}",
        f"{r.emails_per_second:,.0f}",
        f"{r.table_requests_per_email:.2f}",
        f"{deleted:,}",
        f"{r.baseline_seconds:.2f}",
        f"{r.baseline_requests:,}",
        f"{r.ratio:.1f}x",
    )
    print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    """Run the purge benchmark alone: ``python -m bench.purge [--quick] [--out PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.purge", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300 emails instead of 3,000")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "purge.json",
        help="where to write the JSON result (default: bench/results/purge.json)",
    )
    args = parser.parse_args(argv)
    run_purge_bench(QUICK if args.quick else STANDARD, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
