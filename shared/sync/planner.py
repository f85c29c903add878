"""The timer's fan-out: one mail sync job per active connection.

Known limitations: connections are listed with one cross-partition query and jobs are sent
from one invocation; two timer runs for the same slot each enqueue a job per connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.adapters.queues import MAIL_SYNC_QUEUE
from shared.sync.connections import MAIL
from shared.sync.mail import MailJob

if TYPE_CHECKING:
    from shared.adapters.queues import JobQueue
    from shared.sync.connections import ConnectionStore

logger = logging.getLogger(__name__)

SEND_CHUNK = 500


class SyncPlanner:
    """Finds connections due for sync and enqueues their jobs."""

    def __init__(self, connections: ConnectionStore, queue: JobQueue) -> None:
        self._connections = connections
        self._queue = queue

    def fan_out(self) -> int:
        """Enqueue one mail job per active mail connection; return how many were sent."""
        sent = 0
        chunk: list[dict[str, str]] = []
        for connection in self._connections.list_active():
            if connection.kind != MAIL:
                continue
            chunk.append(MailJob(connection.tenant_id, connection.user_id).as_message())
            if len(chunk) >= SEND_CHUNK:
                sent += self._queue.send_many(MAIL_SYNC_QUEUE, chunk)
                chunk = []
        if chunk:
            sent += self._queue.send_many(MAIL_SYNC_QUEUE, chunk)
        logger.info("sync fan-out done", extra={"jobs": sent})
        return sent
