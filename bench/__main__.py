"""Run the benchmarks: fan-out, filtering, purge, backfill memory; ``--quick`` for smaller sizes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import filtering, memory, purge
from bench.fanout import QUICK, STANDARD, run_fanout_bench


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the four benchmarks and print their tables."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 and 10,000, one run each")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "fanout.json",
        help="where to write the JSON results (default: bench/results/fanout.json)",
    )
    args = parser.parse_args(argv)
    run_fanout_bench(QUICK if args.quick else STANDARD, args.out)
    filter_plan = filtering.QUICK if args.quick else filtering.STANDARD
    filtering.run_filtering_bench(filter_plan, args.out.parent / "filtering.json")
    purge_plan = purge.QUICK if args.quick else purge.STANDARD
    purge.run_purge_bench(purge_plan, args.out.parent / "purge.json")
    memory_result = memory.run(quick=args.quick)
    print(memory.report(memory_result))
    target = args.out.parent / "memory.json"
    target.write_text(json.dumps(memory_result, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
