"""Peak memory of a mail sync worker backfilling mailboxes of 5,000 and 50,000 messages.

The local stack runs (Azurite, the simulator, the host with its mail worker switched off); the
mailbox is loaded into the simulator; then a separate worker process runs the product's mail
sync job until the backfill completes, the way a queue worker does, and reports its peak
resident memory. Memory that stays flat between the two sizes shows that pages are streamed and
nothing grows with the mailbox. Two percent of the mail is customer mail and is stored; the rest
is read and dropped, as most of a mailbox is.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from devstack.stack import ROOT, LocalStack

if TYPE_CHECKING:
    from pathlib import Path

SIZES = (5_000, 50_000)
QUICK_SIZES = (1_000, 3_000)
CUSTOMER_SHARE = 50  # one message in fifty is customer mail
DOMAIN = "bench.example"


def _messages(count: int, upn: str) -> list[dict[str, Any]]:
    start = datetime.now(UTC) - timedelta(days=300)
    messages = []
    for index in range(count):
        sender = (
            "buyer@customer.example" if index % CUSTOMER_SHARE == 0 else f"n{index}@news.example"
        )
        stamp = (start + timedelta(minutes=5 * index)).strftime("%Y-%m-%dT%H:%M:%SZ")
        messages.append(
            {
                "internetMessageId": f"<bench-{index}-{uuid.uuid4().hex}@mail.example>",
                "subject": f"Message {index}",
                "from": {"emailAddress": {"name": "Sender", "address": sender}},
                "toRecipients": [{"emailAddress": {"name": "User", "address": upn}}],
                "sentDateTime": stamp,
                "receivedDateTime": stamp,
                "body": {"contentType": "html", "content": "<p>" + "lorem ipsum " * 80 + "</p>"},
                "bodyPreview": "lorem ipsum",
            }
        )
    return messages


def measure(stack: LocalStack, count: int) -> dict[str, Any]:
    """Backfill one mailbox of ``count`` messages in a worker process; return its figures."""
    tenant_id, oid = str(uuid.uuid4()), str(uuid.uuid4())
    upn = f"user{count}@{DOMAIN}"
    admin = stack.token(tenant_id, str(uuid.uuid4()), roles=("Admin",))
    tenant = {"name": "Bench", "ownDomains": [DOMAIN], "backfillDays": 365}
    stack.call("PUT", "admin/tenant", admin, json=tenant).raise_for_status()
    stack.call("PUT", f"admin/users/{oid}", admin, json={"upn": upn}).raise_for_status()
    company = {"name": "Customer", "domains": ["customer.example"]}
    stack.call("POST", "admin/companies", admin, json=company).raise_for_status()
    stack.sim.add_user(tenant_id, upn, oid=oid)
    stack.connect_mail(stack.token(tenant_id, oid, upn=upn)).raise_for_status()
    stack.sim.load_messages(upn, "inbox", _messages(count, upn))
    job = json.dumps({"kind": "mail", "tenant": tenant_id, "user": oid})
    command = [sys.executable, "-m", "bench.memory_worker", job]
    result = subprocess.run(
        command, env={**_environ(), **stack.env}, cwd=ROOT, capture_output=True, check=True
    )
    figures: dict[str, Any] = json.loads(result.stdout.decode("utf-8").strip().splitlines()[-1])
    return {"messages": count, **figures}


def _environ() -> dict[str, str]:
    import os  # noqa: PLC0415 - only the benchmark's child needs the parent's environment

    return dict(os.environ)


def run(
    *, quick: bool = False, workdir: Path | None = None, stack: LocalStack | None = None
) -> dict[str, Any]:
    """Run the memory benchmark and return its result document.

    ``stack`` is a running local stack whose host has its mail worker switched off; without
    one the benchmark starts and stops its own.
    """
    sizes = QUICK_SIZES if quick else SIZES
    if stack is None:
        running = LocalStack(
            workdir or ROOT / ".stack" / "bench-memory",
            extra_env={"AzureWebJobs.mail_sync_worker.Disabled": "true"},
        ).start()
    else:
        running = stack
    try:
        rows = [measure(running, count) for count in sizes]
    finally:
        if stack is None:
            running.stop()
    small, large = rows[0]["peak_rss_mb"], rows[-1]["peak_rss_mb"]
    return {
        "benchmark": "memory",
        "rows": rows,
        "growth_ratio": round(large / small, 3),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rows),
    }


def report(result: dict[str, Any]) -> str:
    """Format the result as a short table."""
    lines = [
        f"{'messages':>9} {'peak RSS MB':>12} {'pages':>6} {'jobs':>5} {'seconds':>8} {'msg/s':>7}"
    ]
    lines += [
        f"{row['messages']:>9} {row['peak_rss_mb']:>12.1f} {row['pages']:>6} {row['jobs']:>5}"
        f" {row['seconds']:>8.1f} {row['messages'] / row['seconds']:>7.0f}"
        for row in result["rows"]
    ]
    lines.append(f"peak memory growth from smallest to largest mailbox: x{result['growth_ratio']}")
    return "\n".join(lines)


if __name__ == "__main__":
    outcome = run(quick="--quick" in sys.argv)
    print(report(outcome))
    target = ROOT / "bench" / "results"
    target.mkdir(parents=True, exist_ok=True)
    (target / "memory.json").write_text(json.dumps(outcome, indent=2), "utf-8")
