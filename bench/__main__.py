"""Run the benchmarks: fan-out, filtering, purge, sync pipeline, Graph requests, latency, memory.

``--quick`` runs smaller sizes. The last four share one local stack (Azurite, the simulator, the
host with its mail worker switched off).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import filtering, graphcalls, latency, memory, pipeline, purge, syncrig
from bench.fanout import QUICK, STANDARD, run_fanout_bench


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
    run_fanout_bench(QUICK if quick else STANDARD, args.out)
    filter_plan = filtering.QUICK if quick else filtering.STANDARD
    filtering.run_filtering_bench(filter_plan, results / "filtering.json")
    purge.run_purge_bench(purge.QUICK if quick else purge.STANDARD, results / "purge.json")
    stack = syncrig.start_stack()
    try:
        pipeline_plan = pipeline.QUICK if quick else pipeline.STANDARD
        pipeline.run_pipeline_bench(pipeline_plan, results / "pipeline.json", stack)
        calls_plan = graphcalls.QUICK if quick else graphcalls.STANDARD
        graphcalls.run_graphcalls_bench(calls_plan, results / "graphcalls.json", stack)
        latency_plan = latency.QUICK if quick else latency.STANDARD
        latency.run_latency_bench(latency_plan, results / "latency.json", stack)
        memory_result = memory.run(quick=quick, stack=stack)
    finally:
        stack.stop()
    print(memory.report(memory_result))
    (results / "memory.json").write_text(json.dumps(memory_result, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
