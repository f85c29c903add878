"""Benchmark of the sync pipeline's cost: Graph to Table Storage, against its storage floor.

Each run connects a new mailbox of N messages across Inbox, Sent Items and Archive (half of it
customer mail, stored; half newsletters, dropped with a decision record) and lets one worker
process run the product's mail sync job until the backfill's round completes, end to end from
the simulator (no added latency) into Azurite. Messages per second is N over the worker's sync
time.

The baseline, measured in the same run, is the floor for this storage design: every entity the
sync wrote (the product's tables listed before and after the sync; new or changed rows) is
written again as a copy into fresh tables, grouped by partition, in ``submit_transaction``
batches of up to 100, one batch after another. The ratio is the pipeline's time over that.

Known limitations: Azurite and the simulator share the machine's two cores with the worker, so
seconds are this machine's; the ratio compares the pipeline with a floor on the same emulator.
The simulator answers at once, so Graph's own latency, the subject of ``bench/latency.py``, is
left out here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.data.tables import TableServiceClient

from bench import syncrig
from shared.adapters.tables import TABLES

if TYPE_CHECKING:
    from devstack.stack import LocalStack

Key = tuple[str, str, str]
"""Table, PartitionKey, RowKey."""
BATCH = 100


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure: messages per mailbox, runs (one new mailbox each), and their budget.

    A run after the first is skipped when it would end more than ``budget_s`` after the first
    began, judging by the run before it.
    """

    name: str
    messages: int
    runs: int
    budget_s: float


STANDARD = Plan(name="standard", messages=2_100, runs=3, budget_s=100)
QUICK = Plan(name="quick", messages=300, runs=2, budget_s=30)


@dataclass(frozen=True, slots=True)
class Run:
    """One mailbox synced, and the same entities written in batches."""

    sync_seconds: float
    pages: int
    jobs: int
    entities: int
    by_table: dict[str, int]
    table_requests: dict[str, int]
    baseline_seconds: float
    baseline_transactions: int


@dataclass(frozen=True, slots=True)
class Result:
    """The medians over the runs, and every run."""

    messages: int
    runs: int
    sync_seconds: float
    messages_per_second: float
    entities: int
    entities_per_message: float
    table_requests_per_message: float
    baseline_seconds: float
    baseline_transactions: int
    ratio: float
    every_run: list[dict[str, Any]]


def run_pipeline_bench(plan: Plan, out: Path, stack: LocalStack | None = None) -> Result:
    """Measure the plan on ``stack`` (or a stack of its own), print a table, write the JSON."""
    own = stack is None
    running = syncrig.start_stack() if stack is None else stack
    try:
        result = _measure(running, plan)
    finally:
        if own:
            running.stop()
    _print_table(plan, result)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "pipeline",
        "plan": plan.name,
        "cpus": os.cpu_count(),
        "measuredAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": asdict(result),
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return result


def _measure(stack: LocalStack, plan: Plan) -> Result:
    service = TableServiceClient.from_connection_string(stack.env["AzureWebJobsStorage"])
    tenant = syncrig.Tenant.create(stack)
    runs: list[Run] = []
    deadline, last_run_s = time.monotonic() + plan.budget_s, 0.0
    for number in range(plan.runs):
        if number > 0 and time.monotonic() + last_run_s > deadline:
            print(f"  run {number + 1}/{plan.runs} skipped: it would not fit in the time budget")
            break
        run_started = time.monotonic()
        mailbox = syncrig.new_mailbox(tenant, plan.messages, customer_every=2)
        before = _entities(service)
        figures = syncrig.run_worker(mailbox)
        written = _written(before, _entities(service))
        seconds, transactions = _time_baseline(service, written, f"copy{number}")
        by_table = Counter(table for table, _, _ in written)
        run = Run(
            sync_seconds=float(figures["seconds"]),
            pages=int(figures["pages"]),
            jobs=int(figures["jobs"]),
            entities=len(written),
            by_table=dict(sorted(by_table.items())),
            table_requests=dict(figures["table_requests"]),
            baseline_seconds=round(seconds, 3),
            baseline_transactions=transactions,
        )
        runs.append(run)
        last_run_s = time.monotonic() - run_started
        print(
            f"  run {number + 1}/{plan.runs}: sync {run.sync_seconds:.1f} s "
            f"({run.pages} pages, {sum(run.table_requests.values()):,} table requests, "
            f"{run.entities:,} entities written), "
            f"baseline {run.baseline_seconds:.2f} s ({transactions} transactions)"
        )
    return _summarise(plan, runs)


def _entities(service: TableServiceClient) -> dict[Key, dict[str, Any]]:
    """Every entity of the product's tables, by table and keys."""
    found: dict[Key, dict[str, Any]] = {}
    for table in TABLES:
        for entity in service.get_table_client(table).list_entities(results_per_page=1000):
            found[table, entity["PartitionKey"], entity["RowKey"]] = dict(entity)
    return found


def _written(
    before: dict[Key, dict[str, Any]], after: dict[Key, dict[str, Any]]
) -> dict[Key, dict[str, Any]]:
    """The entities that are new, or whose properties changed, after the sync."""
    return {key: row for key, row in after.items() if before.get(key) != row}


def _time_baseline(
    service: TableServiceClient, written: dict[Key, dict[str, Any]], prefix: str
) -> tuple[float, int]:
    """Write copies of the entities into fresh tables, 100 per transaction of one partition.

    Returns the seconds the writes took and how many transactions they were.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (table, partition, _), row in sorted(written.items()):
        groups[table, partition].append(row)
    clients = {}
    for table in {table for table, _ in groups}:
        clients[table] = service.create_table_if_not_exists(f"{prefix}{table}"[:63])
    transactions = 0
    started = time.perf_counter()
    for (table, _), rows in groups.items():
        for first in range(0, len(rows), BATCH):
            operations: list[Any] = [("upsert", row) for row in rows[first : first + BATCH]]
            clients[table].submit_transaction(operations)
            transactions += 1
    return time.perf_counter() - started, transactions


def _summarise(plan: Plan, runs: list[Run]) -> Result:
    sync_s = statistics.median(run.sync_seconds for run in runs)
    baseline_s = statistics.median(run.baseline_seconds for run in runs)
    entities = round(statistics.median(run.entities for run in runs))
    requests = statistics.median(sum(run.table_requests.values()) for run in runs)
    return Result(
        messages=plan.messages,
        runs=len(runs),
        sync_seconds=round(sync_s, 2),
        messages_per_second=round(plan.messages / sync_s, 1),
        entities=entities,
        entities_per_message=round(entities / plan.messages, 2),
        table_requests_per_message=round(requests / plan.messages, 2),
        baseline_seconds=round(baseline_s, 2),
        baseline_transactions=round(statistics.median(run.baseline_transactions for run in runs)),
        ratio=round(statistics.median(run.sync_seconds / run.baseline_seconds for run in runs), 1),
        every_run=[asdict(run) for run in runs],
    )


def _print_table(plan: Plan, r: Result) -> None:
    print()
    print(f"sync pipeline on the local stack ({plan.name}): medians of {r.runs} runs")
    print("ratio = sync time / time to write the same entities in batched transactions")
    print(
        "messages | runs | sync s | msg/s | table requests/msg | entities | entities/msg"
        " | baseline s | baseline transactions | ratio"
    )
    cells = (
        f"{r.messages:,}",
        f"{r.runs}",
        f"{r.sync_seconds:.1f}",
        f"{r.messages_per_second:,.0f}",
        f"{r.table_requests_per_message:.2f}",
        f"{r.entities:,}",
        f"{r.entities_per_message:.2f}",
        f"{r.baseline_seconds:.2f}",
        f"{r.baseline_transactions:,}",
        f"{r.ratio:.1f}x",
    )
    print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline benchmark alone: ``python -m bench.pipeline [--quick] [--out PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller mailboxes, fewer runs")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "pipeline.json",
        help="where to write the JSON result (default: bench/results/pipeline.json)",
    )
    args = parser.parse_args(argv)
    run_pipeline_bench(QUICK if args.quick else STANDARD, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
