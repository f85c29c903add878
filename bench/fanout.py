"""Benchmark of the two-stage sync fan-out against a real Azurite.

For each size it seeds that many active mail connection rows across many tenants (one tenant
holds a tenth of them, so it is split into pages; the rest sit in tenants of 100, the last
taking what is left over), in batched transactions from several processes
(:mod:`bench.fanoutseed`). Each run then takes a new slot and runs the product's fan-out end to
end (:mod:`bench.fanoutinstances`): stage 1 (:meth:`SyncPlanner.fan_out`) in this process, and
every stage 2 message it leads to (:meth:`SyncPlanner.fan_out_page`) in processes standing in
for host instances, each taking batches of the host's ``batchSize`` messages off
``sync-fanout`` as the host does (two: one per core of this machine, which Azurite shares; on
Azure the host scales out to as many instances as there are pages). The same run times a plain
loop that sends messages of the same shape one by one with ``send_message`` in one process: all
N, or a sample of :data:`PLAIN_SAMPLE` when N is larger, since a sequential loop's rate does
not depend on how many it sends. Medians over the runs are printed and written as JSON.

The whole benchmark keeps to a time budget (7 minutes, quick 30 s): a size's second and third
runs are skipped when they would not leave time for the first run of the larger sizes, and the
table and JSON say how many runs each median is over.

Known limitations: Azurite is one Node.js process sharing the machine with this one, so the
figures show the fan-out's cost relative to a plain loop on the same machine, not Azure's
throughput. Azurite answers every receive by scanning every message of the account, the mail
jobs already sent included, so each stage 2 batch taken costs more as the run goes on, which
Azure's queues avoid; it also scans the whole table for every query. Token caches are 1 KB
placeholders where real sealed caches are a few KB; stage 2 does not read them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy

from bench.fanoutinstances import INSTANCES, Timing, at, time_fanout
from bench.fanoutseed import seed_connections
from devstack.azurite import Azurite, start_azurite
from shared.adapters.queues import FANOUT_QUEUE, MAIL_SYNC_QUEUE, JobQueue, encode_job
from shared.adapters.tables import TableEntityStore
from shared.sync.connections import MAIL, TABLE
from shared.sync.connectionstore import ConnectionStore
from shared.sync.planner import SyncPlanner

KEEP_ALIVE_S = 120
"""Seconds Azurite keeps an idle connection: longer than any pause between a client's requests."""
PLAIN_SAMPLE = 5_000
"""Messages the plain loop sends per run: its rate is steady, so a sample measures it."""
PLAIN_QUEUE = "bench-plain"


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure: connection counts and runs per count."""

    sizes: tuple[int, ...]
    runs: int
    name: str
    budget_s: float


STANDARD = Plan(sizes=(10_000, 100_000), runs=3, name="standard", budget_s=7 * 60)
QUICK = Plan(sizes=(500, 1_500), runs=1, name="quick", budget_s=30)


@dataclass(slots=True)
class Budget:
    """The time left, and the seconds per connection seen so far to project the next run."""

    deadline: float
    per_connection_s: float = 0.0

    def allows(self, size: int, later_sizes: tuple[int, ...]) -> bool:
        """Tell whether a run of ``size`` still leaves time for one run of each later size."""
        projected = self.per_connection_s * (size + sum(later_sizes) * 1.2)
        return time.monotonic() + projected < self.deadline


@dataclass(frozen=True, slots=True)
class SizeResult:
    """The medians for one size, and every run."""

    connections: int
    tenants: int
    runs: int
    seed_seconds: float
    fanout_seconds: float
    fanout_per_second: float
    plain_messages: int
    plain_seconds: float
    plain_per_second: float
    ratio: float
    fanout_runs: list[dict[str, float]]
    plain_runs: list[dict[str, float]]


def run_fanout_bench(plan: Plan, out: Path) -> list[SizeResult]:
    """Start Azurite, measure every size of the plan, print a table and write the JSON."""
    budget = Budget(time.monotonic() + plan.budget_s)
    results = []
    for position, size in enumerate(plan.sizes):
        # A fresh Azurite per size: it keeps everything in memory, and nothing is deleted
        # during a size because Azurite stalls for minutes collecting deleted messages.
        with tempfile.TemporaryDirectory(prefix="bench-azurite-") as workdir:
            azurite = start_azurite(Path(workdir), keep_alive_s=KEEP_ALIVE_S)
            try:
                later = plan.sizes[position + 1 :]
                results.append(_measure_size(azurite, size, plan.runs, budget, later))
            finally:
                azurite.stop()
    _print_table(plan, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "plan": plan.name,
        "runs": plan.runs,
        "instances": INSTANCES,
        "cpus": os.cpu_count(),
        "measuredAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": [asdict(result) for result in results],
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return results


def _measure_size(
    azurite: Azurite, size: int, runs: int, budget: Budget, later: tuple[int, ...]
) -> SizeResult:
    tables = TableEntityStore(TableServiceClient.from_connection_string(azurite.connection_string))
    tables.ensure_tables((TABLE,))
    queues = QueueServiceClient.from_connection_string(azurite.connection_string)
    jobs = JobQueue(queues)
    jobs.ensure_queues((FANOUT_QUEUE, MAIL_SYNC_QUEUE))
    # The fan-out never opens token caches, so no cipher or MSAL client is needed.
    store = ConnectionStore(tables, cast("Any", None), cast("Any", None))

    started = time.perf_counter()
    tenants = seed_connections(azurite.connection_string, size)
    seed_seconds = time.perf_counter() - started
    print(f"seeded {size:,} connections in {len(tenants):,} tenants in {seed_seconds:.1f} s")

    fanouts: list[Timing] = []
    plains: list[Timing] = []
    base = datetime.now(UTC) + timedelta(days=1)
    for run in range(runs):
        if run > 0 and not budget.allows(size, later):
            print(f"  run {run + 1}/{runs} skipped: it would not fit in the time budget")
            break
        started = time.monotonic()
        slot = base + timedelta(minutes=10 * run)
        planner = SyncPlanner(store, jobs, clock=functools.partial(at, slot))
        fanouts.append(time_fanout(azurite.connection_string, planner, jobs, slot, size))
        plains.append(_time_plain(queues, f"{PLAIN_QUEUE}-{run}", min(size, PLAIN_SAMPLE)))
        budget.per_connection_s = (time.monotonic() - started) / size
        print(
            f"  run {run + 1}/{runs}: fan-out {fanouts[-1].seconds:.1f} s "
            f"({fanouts[-1].retries} stage 2 retries, {fanouts[-1].copies} extra copies), "
            f"plain loop {plains[-1].seconds:.1f} s for {plains[-1].messages:,} messages"
        )
    return _summarise(size, len(tenants), seed_seconds, fanouts, plains)


def _time_plain(queues: QueueServiceClient, name: str, size: int) -> Timing:
    client = queues.get_queue_client(name, message_encode_policy=TextBase64EncodePolicy())
    client.create_queue()
    texts = [
        encode_job({"kind": MAIL, "tenant": "plain", "user": f"user-{i:06d}", "slot": "x"})
        for i in range(size)
    ]
    started = time.perf_counter()
    for text in texts:
        client.send_message(text)
    seconds = time.perf_counter() - started
    return Timing(size, seconds)


def _summarise(
    size: int, tenants: int, seed_seconds: float, fanouts: list[Timing], plains: list[Timing]
) -> SizeResult:
    fanout_s = statistics.median(t.seconds for t in fanouts)
    plain_s = statistics.median(t.seconds for t in plains)
    plain_rate = statistics.median(t.per_second for t in plains)
    return SizeResult(
        connections=size,
        tenants=tenants,
        runs=len(fanouts),
        seed_seconds=round(seed_seconds, 2),
        fanout_seconds=round(fanout_s, 2),
        fanout_per_second=round(size / fanout_s, 1),
        plain_messages=plains[0].messages,
        plain_seconds=round(plain_s, 2),
        plain_per_second=round(plain_rate, 1),
        ratio=round(size / fanout_s / plain_rate, 2),
        fanout_runs=[
            {"seconds": round(t.seconds, 2), "retries": t.retries, "copies": t.copies}
            for t in fanouts
        ],
        plain_runs=[{"seconds": round(t.seconds, 2)} for t in plains],
    )


def _print_table(plan: Plan, results: list[SizeResult]) -> None:
    print()
    print(f"sync fan-out on Azurite ({plan.name}): medians; ratio = fan-out jobs/s / plain msgs/s")
    header = ("connections", "tenants", "runs", "fan-out jobs/s", "fan-out s")
    print(" | ".join(header) + " | plain msgs | plain msgs/s | plain s | ratio")
    for r in results:
        cells = (
            f"{r.connections:,}",
            f"{r.tenants:,}",
            f"{r.runs}",
            f"{r.fanout_per_second:,.0f}",
            f"{r.fanout_seconds:.1f}",
            f"{r.plain_messages:,}",
            f"{r.plain_per_second:,.0f}",
            f"{r.plain_seconds:.1f}",
            f"{r.ratio:.2f}x",
        )
        print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    """Run the fan-out benchmark alone.

    ``python -m bench.fanout [--quick] [--sizes N ...] [--runs R] [--budget S] [--out PATH]``:
    ``--sizes`` and ``--runs`` measure other sizes or more runs than ``make bench`` has time
    for (the 100,000 size three times takes about 12 minutes here), within ``--budget`` seconds.
    """
    plan, out = read_command_line(argv)
    run_fanout_bench(plan, out)
    return 0


def read_command_line(argv: list[str] | None) -> tuple[Plan, Path]:
    """Return the plan and the JSON path the command line asks for.

    Raises:
        SystemExit: with argparse's message naming the option, when a value is not a count.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the quick plan: 500 and 1,500")
    parser.add_argument("--sizes", type=_positive, nargs="+", help="connection counts to run")
    parser.add_argument("--runs", type=_positive, help="runs per size (standard plan: 3)")
    parser.add_argument("--budget", type=_positive, help="seconds for all sizes (standard: 420)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "fanout.json",
        help="where to write the JSON result (default: bench/results/fanout.json)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else STANDARD
    if args.sizes or args.runs or args.budget:
        plan = Plan(
            sizes=tuple(args.sizes or plan.sizes),
            runs=args.runs or plan.runs,
            name="custom",
            budget_s=args.budget or plan.budget_s,
        )
    return plan, args.out


def _positive(text: str) -> int:
    """Read a command-line count that must be a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a whole number above zero, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


if __name__ == "__main__":
    raise SystemExit(main())
