"""Benchmark of Graph request efficiency: requests per 1,000 messages synced, against the minimum.

A new mailbox of N messages across Inbox, Sent Items and Archive (one in fifty customer mail) is
backfilled by one worker process running the product's mail sync job; the simulator's request
log (``sim.requests_seen()``) gives every Graph request made for that mailbox. Then the
simulator's clock moves on ten minutes, a few messages arrive and a few change (see
``CHANGES``), and the next round, a delta round from the stored delta links, is counted the
same way.

The minimum is what the page size allows: per folder, ``ceil(messages / page size)`` delta
pages, at least one (a folder with nothing new still takes one request to say so); the round's
``deltaLink`` comes with the last page, as from Graph. Requests are counted, not timed, so one
run gives the figure; nothing here depends on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import syncrig

if TYPE_CHECKING:
    from devstack.simulator.faults import RequestRecord
    from devstack.stack import LocalStack

ROUND_GAP_S = 600
NEW = {"inbox": 4, "sentitems": 2, "archive": 0}
"""Messages arriving in each folder between the backfill and the delta round."""
CHANGED = {"inbox": 3, "sentitems": 0, "archive": 1}
"""Messages of each folder marked read (and re-subjected) between the two rounds."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure: the mailbox size."""

    name: str
    messages: int


STANDARD = Plan(name="standard", messages=6_000)
QUICK = Plan(name="quick", messages=600)


@dataclass(frozen=True, slots=True)
class Round:
    """The Graph requests of one round for one mailbox."""

    name: str
    messages: int
    requests: int
    by_kind: dict[str, int]
    minimum: int
    per_1000_messages: float
    minimum_per_1000_messages: float
    over_minimum: float
    worker_seconds: float


def run_graphcalls_bench(plan: Plan, out: Path, stack: LocalStack | None = None) -> list[Round]:
    """Measure the plan on ``stack`` (or a stack of its own), print a table, write the JSON."""
    own = stack is None
    running = syncrig.start_stack() if stack is None else stack
    try:
        rounds = _measure(running, plan)
    finally:
        if own:
            running.stop()
    _print_table(plan, rounds)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "graphcalls",
        "plan": plan.name,
        "pageSize": syncrig.PAGE_SIZE,
        "cpus": os.cpu_count(),
        "measuredAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": [asdict(r) for r in rounds],
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return rounds


def _measure(stack: LocalStack, plan: Plan) -> list[Round]:
    tenant = syncrig.Tenant.create(stack)
    mailbox = syncrig.new_mailbox(tenant, plan.messages, customer_every=50)
    mark = syncrig.log_position(stack)
    figures = syncrig.run_worker(mailbox)
    backfill = _round("backfill", mailbox.graph_requests(mark), mailbox.sizes, figures)

    stack.sim.advance_time(ROUND_GAP_S)
    changes = _change(mailbox)
    mark = syncrig.log_position(stack)
    figures = syncrig.run_worker(mailbox)
    delta = _round("10-minute delta", mailbox.graph_requests(mark), changes, figures)
    return [backfill, delta]


def _change(mailbox: syncrig.Mailbox) -> dict[str, int]:
    """Add the new messages and change the others; return the messages changed per folder."""
    sim, upn = mailbox.tenant.stack.sim, mailbox.upn
    start = sim.state.clock.now_datetime() - timedelta(minutes=30)
    changes: dict[str, int] = {}
    for folder in syncrig.FOLDERS:
        fresh = [
            syncrig.graph_message(upn, folder, number, start, customer=True)
            for number in range(NEW[folder])
        ]
        if fresh:
            mailbox.ids[folder] += sim.load_messages(upn, folder, fresh)
        for message_id in mailbox.ids[folder][: CHANGED[folder]]:
            sim.update_message(upn, message_id, {"isRead": True, "subject": "Re: figures"})
        changes[folder] = NEW[folder] + CHANGED[folder]
    return changes


def _kind(record: RequestRecord) -> str:
    path = record.path
    if path.endswith("/messages/delta"):
        kind = "delta page"
    elif "/messages/" in path:
        kind = "single message"
    elif "/mailFolders" in path:
        kind = "folders"
    else:
        kind = path.rsplit("/", 1)[-1] or "other"
    return kind if record.status < 400 else f"{kind} ({record.status})"


def _round(
    name: str, records: list[RequestRecord], changed: dict[str, int], figures: dict[str, Any]
) -> Round:
    messages = sum(changed.values())
    minimum = sum(max(1, math.ceil(count / syncrig.PAGE_SIZE)) for count in changed.values())
    requests = len(records)
    return Round(
        name=name,
        messages=messages,
        requests=requests,
        by_kind=dict(Counter(_kind(record) for record in records)),
        minimum=minimum,
        per_1000_messages=round(requests * 1000 / messages, 1),
        minimum_per_1000_messages=round(minimum * 1000 / messages, 1),
        over_minimum=round(requests / minimum, 2),
        worker_seconds=float(figures["seconds"]),
    )


def _print_table(plan: Plan, rounds: list[Round]) -> None:
    print()
    print(
        f"Graph requests per mailbox ({plan.name}; page size {syncrig.PAGE_SIZE}, 3 folders):"
        " product against the minimum the page size allows"
    )
    print("round | messages | requests | per 1,000 msgs | minimum | min per 1,000 | ratio | kinds")
    for r in rounds:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(r.by_kind.items()))
        cells = (
            r.name,
            f"{r.messages:,}",
            f"{r.requests:,}",
            f"{r.per_1000_messages:,.1f}",
            f"{r.minimum:,}",
            f"{r.minimum_per_1000_messages:,.1f}",
            f"{r.over_minimum:.2f}x",
            kinds,
        )
        print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark alone: ``python -m bench.graphcalls [--quick] [--out PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.graphcalls", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller mailbox")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "graphcalls.json",
        help="where to write the JSON result (default: bench/results/graphcalls.json)",
    )
    args = parser.parse_args(argv)
    run_graphcalls_bench(QUICK if args.quick else STANDARD, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
