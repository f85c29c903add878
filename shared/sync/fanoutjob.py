"""The fan-out's messages: a stage 2 job as it travels on the queue, and the sync jobs it sends.

A stage 2 job (:class:`FanoutJob`) is ``{"kind": "fanout", "tenant", "lastTenant"?, "slot",
"page"?}``: one span of consecutive tenants, ``tenant`` the first and ``lastTenant`` the last
(left out when it is the first), the slot it fans out for, and, from the second page of a span
on, the continuation token of the page it reads. Every copy of one page's message names the
page it passes on the same way (:meth:`FanoutJob.passing_id`), so the planner can record that
it passed it on once.

Each claim a page wins becomes one sync job ``{"kind", "tenant", "user", "slot"}``, sent to its
kind's queue (:data:`JOB_QUEUES`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import CALENDAR_SYNC_QUEUE, MAIL_SYNC_QUEUE
from shared.adapters.tablelimits import key_order, table_key
from shared.errors import InvalidJobError
from shared.sync.connections import CALENDAR, MAIL
from shared.sync.schedule import parse_slot, slot_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from shared.sync.slotclaims import SlotClaim

FANOUT = "fanout"
JOB_QUEUES = {MAIL: MAIL_SYNC_QUEUE, CALENDAR: CALENDAR_SYNC_QUEUE}
"""The queue each kind of connection's sync jobs go to."""


@dataclass(frozen=True, slots=True)
class FanoutJob:
    """A stage 2 message: enqueue the sync jobs of one page of a span of tenants for one slot."""

    tenant_id: str
    slot: datetime
    page: str | None = None
    last_tenant_id: str | None = None
    """The span's last tenant; ``None`` when the span is ``tenant_id`` alone."""

    @classmethod
    def parse(cls, job: Mapping[str, Any]) -> FanoutJob:
        """Read a fan-out job from its queue JSON.

        Raises:
            InvalidJobError: naming the field that is missing or malformed.
        """
        if job.get("kind") != FANOUT:
            msg = f"kind: must be {FANOUT!r}"
            raise InvalidJobError(msg)
        tenant, last, page = job.get("tenant"), job.get("lastTenant"), job.get("page")
        if not isinstance(tenant, str) or not tenant:
            msg = "tenant: must be a non-empty string"
            raise InvalidJobError(msg)
        if last is not None and (not isinstance(last, str) or not last):
            msg = "lastTenant: must be a non-empty string when present"
            raise InvalidJobError(msg)
        if page is not None and (not isinstance(page, str) or not page):
            msg = "page: must be a non-empty string when present"
            raise InvalidJobError(msg)
        if last is not None and key_order(table_key(last)) < key_order(table_key(tenant)):
            msg = "lastTenant: must sort at or after tenant, as stage 1 sends spans"
            raise InvalidJobError(msg)
        last = None if last == tenant else last
        return cls(tenant, parse_slot(job.get("slot")), page, last)

    @property
    def span(self) -> tuple[str, str]:
        """The first and last tenant of the span."""
        return self.tenant_id, self.last_tenant_id or self.tenant_id

    def as_message(self) -> dict[str, Any]:
        """Return the job as queue JSON."""
        message = {"kind": FANOUT, "tenant": self.tenant_id, "slot": slot_text(self.slot)}
        if self.last_tenant_id is not None:
            message["lastTenant"] = self.last_tenant_id
        return message if self.page is None else {**message, "page": self.page}

    def passing_id(self, following: str) -> str:
        """Name this page passing ``following`` on: the same for every copy of its message.

        Copies that read the page with other rows in it (connections added or gone between
        them) pass another page on, and are named apart.
        """
        text = json.dumps([*self.span, self.page or "", following])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def next_page(self, token: str) -> FanoutJob:
        """Return the job for the page after this one."""
        return FanoutJob(self.tenant_id, self.slot, token, self.last_tenant_id)


@dataclass(frozen=True, slots=True)
class FanoutResult:
    """What one stage 2 invocation did."""

    due: int
    sent: int
    more: bool

    @property
    def skipped(self) -> int:
        """Due connections already claimed for this slot (or a later one)."""
        return self.due - self.sent


def jobs_by_queue(claims: Sequence[SlotClaim]) -> dict[str, list[SlotClaim]]:
    """Group claims by the queue their sync jobs go to, in the order they came."""
    groups: dict[str, list[SlotClaim]] = {}
    for claim in claims:
        groups.setdefault(JOB_QUEUES[claim.connection.kind], []).append(claim)
    return groups


def sync_job(claim: SlotClaim) -> dict[str, Any]:
    """Return the sync job message of a claim won."""
    connection = claim.connection
    return {
        "kind": connection.kind,
        "tenant": connection.tenant_id,
        "user": connection.user_id,
        "slot": claim.slot,
    }
