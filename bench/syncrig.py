"""What the sync benchmarks share: one local stack, mailboxes in the simulator, a worker process.

The stack is the one tests use (Azurite, the simulator, the host), with the host's own mail
worker switched off, so the worker process a benchmark starts is the only reader of a mailbox.
Each mailbox belongs to a new user of one tenant, is connected through the real consent flow,
syncs three folders (Inbox, Sent Items, Archive) and is filled with generated messages before
its first sync. The worker is ``bench/sync_worker.py``: the product's mail sync job run job
after job, as the queue worker would, until the round completes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from devstack.stack import ROOT, LocalStack

if TYPE_CHECKING:
    from pathlib import Path

    from devstack.simulator.faults import RequestRecord

DOMAIN = "syncbench.example"
CUSTOMER_DOMAINS = ("customer-a.example", "customer-b.example", "customer-c.example")
FOLDERS = ("inbox", "sentitems", "archive")
PAGE_SIZE = 25
"""The local stack's ``GRAPH_PAGE_SIZE`` (``devstack/stack.py``)."""
BODY = "<p>" + "Please find the figures for this quarter below. " * 40 + "</p>"


def start_stack(workdir: Path | None = None) -> LocalStack:
    """Start the local stack with the host's mail worker switched off."""
    return LocalStack(
        workdir or ROOT / ".stack" / "bench-sync",
        extra_env={"AzureWebJobs.mail_sync_worker.Disabled": "true"},
    ).start()


@dataclass(slots=True)
class Tenant:
    """A tenant set up through the product's admin API, with its customer companies."""

    stack: LocalStack
    tenant_id: str
    admin: str
    users: int = 0

    @classmethod
    def create(cls, stack: LocalStack) -> Tenant:
        """Create the tenant, its own domain and three customer companies."""
        tenant_id = str(uuid.uuid4())
        admin = stack.token(tenant_id, str(uuid.uuid4()), roles=("Admin",))
        body = {"name": "Sync bench", "ownDomains": [DOMAIN], "backfillDays": 365}
        stack.call("PUT", "admin/tenant", admin, json=body).raise_for_status()
        for number, domain in enumerate(CUSTOMER_DOMAINS):
            company = {"name": f"Customer {number}", "domains": [domain]}
            stack.call("POST", "admin/companies", admin, json=company).raise_for_status()
        return cls(stack, tenant_id, admin)


@dataclass(slots=True)
class Mailbox:
    """One connected user whose three folders are synced: messages and their ids per folder."""

    tenant: Tenant
    oid: str
    upn: str
    sizes: dict[str, int] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        """Messages in the synced folders."""
        return sum(self.sizes.values())

    def min_pages(self) -> int:
        """The fewest delta pages a first round can take: the folders' pages, at least one each.

        The simulator, like Graph, ends a round with the ``deltaLink`` on its last page; a folder
        that has nothing new still takes one request to learn that.
        """
        return sum(max(1, math.ceil(count / PAGE_SIZE)) for count in self.sizes.values())

    def job(self) -> dict[str, str]:
        """The mail sync job of this mailbox, as it travels on the queue."""
        return {"kind": "mail", "tenant": self.tenant.tenant_id, "user": self.oid}

    def graph_requests(self, since: int = 0) -> list[RequestRecord]:
        """Graph requests the simulator served for this mailbox, from log position ``since``."""
        seen = self.tenant.stack.sim.requests_seen()[since:]
        return [r for r in seen if r.service == "graph" and r.user == self.oid]


def new_mailbox(tenant: Tenant, count: int, *, customer_every: int = 2) -> Mailbox:
    """Connect a new user of ``tenant`` and load ``count`` messages across the three folders.

    One message in ``customer_every`` is customer mail and is stored (received from a customer
    in Inbox and Archive, sent to one in Sent Items); the rest is newsletters the filter drops.
    """
    stack = tenant.stack
    tenant.users += 1
    oid = str(uuid.uuid4())
    upn = f"user{tenant.users}-{oid[:8]}@{DOMAIN}"
    stack.call("PUT", f"admin/users/{oid}", tenant.admin, json={"upn": upn}).raise_for_status()
    stack.sim.add_user(tenant.tenant_id, upn, oid=oid)
    token = stack.token(tenant.tenant_id, oid, upn=upn)
    stack.connect_mail(token).raise_for_status()
    ids = [stack.sim.folder_id(upn, folder) for folder in FOLDERS]
    chosen = stack.call("PUT", "me/connections/mail/folders", token, json={"folderIds": ids})
    chosen.raise_for_status()
    mailbox = Mailbox(tenant, oid, upn)
    share, extra = divmod(count, len(FOLDERS))
    start = datetime.now(UTC) - timedelta(days=300)
    for position, folder in enumerate(FOLDERS):
        size = share + (1 if position < extra else 0)
        batch = [
            graph_message(upn, folder, number, start, customer=number % customer_every == 0)
            for number in range(size)
        ]
        mailbox.ids[folder] = stack.sim.load_messages(upn, folder, batch)
        mailbox.sizes[folder] = size
    return mailbox


def graph_message(
    upn: str, folder: str, number: int, start: datetime, *, customer: bool
) -> dict[str, Any]:
    """A Graph-shaped message of about 2 KB of HTML, received 5 minutes after the one before."""
    stamp = (start + timedelta(minutes=5 * number)).strftime("%Y-%m-%dT%H:%M:%SZ")
    domain = CUSTOMER_DOMAINS[number % len(CUSTOMER_DOMAINS)]
    other = f"buyer{number % 7}@{domain}" if customer else f"news{number % 11}@news.example"
    sender, recipient = (upn, other) if folder == "sentitems" else (other, upn)
    return {
        "internetMessageId": f"<sb-{folder}-{number}-{uuid.uuid4().hex}@mail.example>",
        "conversationId": f"conv-{folder}-{number // 3}",
        "subject": f"Order {number}" if customer else f"Newsletter {number}",
        "from": {"emailAddress": {"name": "Sender", "address": sender}},
        "toRecipients": [{"emailAddress": {"name": "Recipient", "address": recipient}}],
        "sentDateTime": stamp,
        "receivedDateTime": stamp,
        "body": {"contentType": "html", "content": BODY},
        "bodyPreview": "Please find the figures",
    }


def run_worker(mailbox: Mailbox) -> dict[str, Any]:
    """Run the mailbox's sync in a worker process until the round completes; return its figures.

    The figures are the worker's: ``seconds`` (the sync alone, process start-up excluded),
    ``pages``, ``jobs``, ``peak_rss_mb``, ``table_requests`` (by kind) and ``graph_requests``.
    """
    stack = mailbox.tenant.stack
    command = [sys.executable, "-m", "bench.sync_worker", json.dumps(mailbox.job())]
    result = subprocess.run(
        command, env={**os.environ, **stack.env}, cwd=ROOT, capture_output=True, check=False
    )
    lines = result.stdout.decode("utf-8", "replace").strip().splitlines()
    if result.returncode != 0 or not lines:
        problem = result.stderr.decode("utf-8", "replace")[-2000:]
        message = f"the sync worker failed ({result.returncode}): {lines[-1:]} {problem}"
        raise RuntimeError(message)
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def log_position(stack: LocalStack) -> int:
    """How many requests the simulator has logged so far: a mark to count from."""
    return len(stack.sim.requests_seen())
