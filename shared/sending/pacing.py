"""When an automatic email may go: do-not-disturb hours and the sender's daily limit.

The outbox worker (:mod:`shared.sending.worker`) asks :class:`SendPacer` before it drafts an
automatic email; manual emails ignore both rules. The daily limit counts per local day in the
sender's mailbox time zone (``GET /me/mailboxSettings``), in ``sendcounts``; an email over it
waits until the next local midnight. Do-not-disturb hours delay it until the window ends, in the
sender's zone or, when the tenant keeps them in the recipient's, in the zone of the first
recipient who is a company contact with a ``timeZone``. Both delays are queue visibility delays
(at most 7 days), so nothing is dropped.

Known limitations: a slot of the daily limit, once taken, stays taken when the email later
fails. With recipients in several zones, only the first known one decides the window. A
connection consented without ``MailboxSettings.Read`` counts days in UTC.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import OUTBOX_QUEUE
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import ETAG
from shared.errors import ConflictError, ReauthRequiredError, TransientError
from shared.sending.outbox import outbox_job
from shared.sending.schedule import (
    RECIPIENT,
    delay_seconds,
    local_day,
    next_day_start,
    quiet_until,
)
from shared.sync.eventtimes import zone_of

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.directory.model import Tenant
    from shared.sending.message import OutgoingEmail
    from shared.sending.ports import SendGraph, TenantSettings

logger = logging.getLogger(__name__)

SEND_COUNTS = "sendcounts"
"""The table counting each sender's automatic emails per local day."""
COUNT_ATTEMPTS = 5


class SendPacer:
    """Holds automatic emails back for do-not-disturb hours and the sender's daily limit.

    ``save`` is the worker's conditional rewrite of an outbox row, so a cancel that landed first
    stops a postponement as it stops any other step.
    """

    def __init__(
        self,
        *,
        tables: TableEntityStore,
        queue: JobQueue,
        graph: SendGraph,
        settings: TenantSettings,
        clock: Callable[[], datetime],
        save: Callable[[Entity, Mapping[str, Any]], Entity],
    ) -> None:
        self._tables = tables
        self._queue = queue
        self._graph = graph
        self._settings = settings
        self._clock = clock
        self._save = save

    def postpone(self, tenant_id: str, row: Entity, token: str, email: OutgoingEmail) -> bool:
        """Put an automatic email off when it may not go now; return whether it was.

        An email that may go takes a slot of the sender's daily limit once, noted on ``row``
        (updated in place).
        """
        tenant = self._settings.get_tenant(tenant_id)
        if tenant is None:
            return False
        now, zone = self._clock(), self._zone(token)
        until = quiet_until(
            now, self._quiet_zone(tenant_id, email, tenant, zone), tenant.do_not_disturb
        )
        if until is not None:
            self._later(tenant_id, row, now, until, "doNotDisturb")
            return True
        if row.get("countedDay"):
            return False
        day = local_day(now, zone)
        if not self._reserve(tenant_id, str(row["userId"]), day, tenant.daily_automatic_limit):
            self._later(tenant_id, row, now, next_day_start(now, zone), "dailyLimit")
            return True
        row.update(self._save(row, {"countedDay": day, "waitingFor": ""}))
        return False

    def _quiet_zone(self, tenant_id: str, email: OutgoingEmail, tenant: Tenant, sender: Any) -> Any:
        """Return the zone do-not-disturb hours are kept in: a recipient's when so set and known.

        With ``timeZone: recipient``, the first ``to`` (then ``cc``) recipient that is a known
        contact with a time zone decides; without one, the sender's mailbox zone does.
        """
        window = tenant.do_not_disturb
        if window is None or window.zone_of != RECIPIENT:
            return sender
        addresses = [a.address for a in (*email.to, *email.cc)]
        name = self._settings.contact_time_zone(tenant_id, addresses)
        # NOTE: zone_of() reads a missing name as UTC, so no name must keep the sender's zone.
        return (zone_of(name) if name else None) or sender

    def _zone(self, token: str) -> Any:
        try:
            name = self._graph.mailbox_time_zone(token)
        except ReauthRequiredError:
            logger.warning("mailbox settings not readable; counting days in UTC")
            name = "UTC"
        return zone_of(name) or UTC

    def _later(
        self, tenant_id: str, row: Entity, now: datetime, until: datetime, reason: str
    ) -> None:
        delay = delay_seconds(now, until)
        changes = {"notBefore": until.isoformat(timespec="seconds"), "waitingFor": reason}
        self._save(row, changes)
        self._queue.send(OUTBOX_QUEUE, outbox_job(tenant_id, str(row["RowKey"])), delay_s=delay)
        logger.info("outbox item postponed", extra={"outbox_id": row["RowKey"], "delay_s": delay})

    def _reserve(self, tenant_id: str, user_id: str, day: str, limit: int) -> bool:
        partition, key = table_key(tenant_id), table_key(user_id, day)
        for _ in range(COUNT_ATTEMPTS):
            counter = self._tables.get(SEND_COUNTS, partition, key)
            count = int(counter.get("count") or 0) if counter else 0
            if count >= limit:
                return False
            entity = {"PartitionKey": partition, "RowKey": key, "count": count + 1}
            try:
                self._tables.update(SEND_COUNTS, entity, etag=counter[ETAG] if counter else None)
            except ConflictError:
                continue
            return True
        message = f"the daily count of user {user_id} kept changing"
        raise TransientError(message)
