"""Benchmark of a latency-bound backfill: Graph slow per request, 4 requests per mailbox at once.

The simulator holds every Graph request of the mailbox for a fixed delay before answering
(a ``FaultRule`` with status 0 and ``delay_s``) and enforces Outlook's limit of 4 concurrent
requests per mailbox (``sim.set_mailbox_concurrency(4)``). A new mailbox of N messages across
Inbox, Sent Items and Archive (one in fifty customer mail) is then backfilled by one worker
process running the product's mail sync job until the round completes.

The ideal is the pages the round needs times the delay, divided by the concurrency Graph allows:
what a worker keeping 4 requests in flight all the time would take. The ratio is the wall time
over that. The table also shows the peak concurrency the simulator saw for the mailbox and the
time of the same pages at one request at a time (pages x delay), the floor of a sequential walk.

Known limitations: the delay stands for Graph's latency and is the same for every page; real
pages of full messages vary with their size. Most of the wall time is the delay, so the figure
moves little with the machine's load; the rest is the worker's processing on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import syncrig
from devstack.simulator import FaultRule

if TYPE_CHECKING:
    from devstack.stack import LocalStack

CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure: messages per mailbox, the delay per request, runs (a mailbox each)."""

    name: str
    messages: int
    delay_s: float
    runs: int


STANDARD = Plan(name="standard", messages=6_000, delay_s=0.1, runs=1)
QUICK = Plan(name="quick", messages=900, delay_s=0.1, runs=1)


@dataclass(frozen=True, slots=True)
class Run:
    """One backfill behind the slow Graph."""

    wall_seconds: float
    pages: int
    jobs: int
    graph_requests: int
    peak_concurrency: int
    refusals: int


@dataclass(frozen=True, slots=True)
class Result:
    """The medians over the runs, and every run."""

    messages: int
    delay_s: float
    concurrency: int
    runs: int
    pages: int
    wall_seconds: float
    ideal_seconds: float
    sequential_seconds: float
    ratio: float
    peak_concurrency: int
    refusals: int
    every_run: list[dict[str, Any]]


def run_latency_bench(plan: Plan, out: Path, stack: LocalStack | None = None) -> Result:
    """Measure the plan on ``stack`` (or a stack of its own), print a table, write the JSON."""
    own = stack is None
    running = syncrig.start_stack() if stack is None else stack
    try:
        result = _measure(running, plan)
    finally:
        running.sim.clear_faults()
        if own:
            running.stop()
    _print_table(plan, result)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "latency",
        "plan": plan.name,
        "pageSize": syncrig.PAGE_SIZE,
        "cpus": os.cpu_count(),
        "measuredAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": asdict(result),
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return result


def _measure(stack: LocalStack, plan: Plan) -> Result:
    tenant = syncrig.Tenant.create(stack)
    stack.sim.set_mailbox_concurrency(CONCURRENCY)
    runs: list[Run] = []
    for number in range(plan.runs):
        mailbox = syncrig.new_mailbox(tenant, plan.messages, customer_every=50)
        slow = FaultRule(
            ".", 0, service="graph", user=mailbox.oid, count=None, delay_s=plan.delay_s
        )
        stack.sim.add_fault(slow)
        mark = syncrig.log_position(stack)
        figures = syncrig.run_worker(mailbox)
        served = mailbox.graph_requests(mark)
        run = Run(
            wall_seconds=float(figures["seconds"]),
            pages=int(figures["pages"]),
            jobs=int(figures["jobs"]),
            graph_requests=len(served),
            peak_concurrency=stack.sim.peak_concurrency(mailbox.upn),
            refusals=stack.sim.concurrency_refusals(mailbox.upn),
        )
        runs.append(run)
        ideal = run.pages * plan.delay_s / CONCURRENCY
        print(
            f"  run {number + 1}/{plan.runs}: {run.wall_seconds:.1f} s for {run.pages} pages"
            f" ({run.graph_requests} Graph requests, peak {run.peak_concurrency} in flight),"
            f" ideal {ideal:.1f} s"
        )
    return _summarise(plan, runs)


def _summarise(plan: Plan, runs: list[Run]) -> Result:
    pages = round(statistics.median(run.pages for run in runs))
    wall = statistics.median(run.wall_seconds for run in runs)
    ideal = pages * plan.delay_s / CONCURRENCY
    return Result(
        messages=plan.messages,
        delay_s=plan.delay_s,
        concurrency=CONCURRENCY,
        runs=len(runs),
        pages=pages,
        wall_seconds=round(wall, 2),
        ideal_seconds=round(ideal, 2),
        sequential_seconds=round(pages * plan.delay_s, 2),
        ratio=round(
            statistics.median(
                run.wall_seconds / (run.pages * plan.delay_s / CONCURRENCY) for run in runs
            ),
            2,
        ),
        peak_concurrency=max(run.peak_concurrency for run in runs),
        refusals=sum(run.refusals for run in runs),
        every_run=[asdict(run) for run in runs],
    )


def _print_table(plan: Plan, r: Result) -> None:
    print()
    print(
        f"latency-bound backfill ({plan.name}): {r.delay_s * 1000:.0f} ms per Graph request,"
        f" {r.concurrency} requests per mailbox allowed; ratio = wall time / ideal"
    )
    print(
        "messages | runs | pages | wall s | ideal s | pages x delay s | ratio"
        " | peak in flight | refused"
    )
    cells = (
        f"{r.messages:,}",
        f"{r.runs}",
        f"{r.pages:,}",
        f"{r.wall_seconds:.1f}",
        f"{r.ideal_seconds:.1f}",
        f"{r.sequential_seconds:.1f}",
        f"{r.ratio:.2f}x",
        f"{r.peak_concurrency}",
        f"{r.refusals}",
    )
    print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark alone: ``python -m bench.latency [--quick] [--out PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a mailbox of 900 messages")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "latency.json",
        help="where to write the JSON result (default: bench/results/latency.json)",
    )
    args = parser.parse_args(argv)
    run_latency_bench(QUICK if args.quick else STANDARD, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
