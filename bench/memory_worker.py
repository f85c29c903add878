"""Child process of the memory benchmark: run one mail job to completion, print its figures.

It calls the product's mail sync service the way the queue worker does, job after job, until
the backfill's round is complete, then prints one JSON line with its peak resident memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from shared.wiring import services


def main(job_text: str) -> int:
    """Run the job until its round completes; print peak RSS, pages, jobs and seconds."""
    job = json.loads(job_text)
    sync = services().mail_sync
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
    peak_kb = _high_water_kb()
    figures = {
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "pages": pages,
        "jobs": jobs,
        "seconds": round(time.monotonic() - started, 2),
    }
    print(json.dumps(figures))
    return 0


def _high_water_kb() -> int:
    """Return this process image's peak resident memory in KiB.

    ``getrusage``'s ``ru_maxrss`` would do on its own, but Linux carries the parent's high water
    mark across fork and exec into it, and the parent here holds the simulator's whole mailbox;
    ``VmHWM`` belongs to this process image alone.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text("ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
