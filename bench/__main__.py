"""Run the benchmarks: fan-out, filtering, purge, sync pipeline, Graph requests, latency, memory.

``--quick`` runs smaller sizes. The last four share one local stack (Azurite, the simulator, the
host with its mail worker switched off).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import filtering, graphcalls, latency, memory, pipeline, purge, syncrig
from bench.fanout import QUICK, STANDARD, run_fanout_bench

if TYPE_CHECKING:
    from collections.abc import Iterator


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the seven benchmarks and print their tables."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer runs")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "fanout.json",
        help="where to write the JSON results (default: bench/results/fanout.json)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    results = args.out.parent
    clock = Stopwatch()
    with clock.lap("fanout"):
        run_fanout_bench(QUICK if quick else STANDARD, args.out)
    with clock.lap("filtering"):
        filter_plan = filtering.QUICK if quick else filtering.STANDARD
        filtering.run_filtering_bench(filter_plan, results / "filtering.json")
    with clock.lap("purge"):
        purge.run_purge_bench(purge.QUICK if quick else purge.STANDARD, results / "purge.json")
    _run_sync_benches(quick, results, clock)
    print(clock.report())
    (results / "time.json").write_text(json.dumps(clock.summary(), indent=2) + "\n", "utf-8")
    return 0


def _run_sync_benches(quick: bool, results: Path, clock: Stopwatch) -> None:
    """Run the four benchmarks that share one local stack, timing each."""
    with clock.lap("stack start"):
        stack = syncrig.start_stack()
    try:
        with clock.lap("pipeline"):
            pipeline_plan = pipeline.QUICK if quick else pipeline.STANDARD
            pipeline.run_pipeline_bench(pipeline_plan, results / "pipeline.json", stack)
        with clock.lap("graphcalls"):
            calls_plan = graphcalls.QUICK if quick else graphcalls.STANDARD
            graphcalls.run_graphcalls_bench(calls_plan, results / "graphcalls.json", stack)
        with clock.lap("latency"):
            latency_plan = latency.QUICK if quick else latency.STANDARD
            latency.run_latency_bench(latency_plan, results / "latency.json", stack)
        with clock.lap("memory"):
            memory_result = memory.run(quick=quick, stack=stack)
    finally:
        stack.stop()
    print(memory.report(memory_result))
    (results / "memory.json").write_text(json.dumps(memory_result, indent=2), "utf-8")


class Stopwatch:
    """Wall time of each benchmark of a whole run, in the order they ran."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._cpu_start = _cpu_seconds()
        self._load_start = round(os.getloadavg()[0], 2)

    @contextlib.contextmanager
    def lap(self, name: str) -> Iterator[None]:
        """Time the block under ``name``."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.laps[name] = round(time.monotonic() - started, 1)

    def summary(self) -> dict[str, Any]:
        """Return the laps, their total, CPU seconds used and the machine's load at both ends."""
        return {
            "seconds": self.laps,
            "total_s": round(sum(self.laps.values()), 1),
            "cpu_s": round(_cpu_seconds() - self._cpu_start, 1),
            "load_1min": [self._load_start, round(os.getloadavg()[0], 2)],
        }

    def report(self) -> str:
        """Return one line per benchmark, the total, and the CPU time and load of the run."""
        summary = self.summary()
        lines = [f"{name:12} {seconds:7.1f} s" for name, seconds in self.laps.items()]
        start, end = summary["load_1min"]
        return (
            "\nwall time of the run\n"
            + "\n".join(lines)
            + f"\n{'total':12} {summary['total_s']:7.1f} s"
            + f"\nCPU time of this process and its stopped children: {summary['cpu_s']:.0f} s;"
            + f" load average (1 min) {start:.1f} at the start, {end:.1f} at the end"
        )


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


if __name__ == "__main__":
    sys.exit(main())
