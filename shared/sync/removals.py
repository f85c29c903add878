"""Removals seen in delta rounds, resolved only when a connection's round is complete.

A message moved between folders shows up as ``@removed`` in the folder it left and as present
in the folder it entered, in either order (BR-02). So a removal is first noted in the
``pendingremovals`` table; seeing the same id present later in the round cancels it; and when
the round has walked every folder, each removal still pending is checked with a ``GET`` of the
message: a 404 unlinks it from this mailbox (deleting the email when no other holder is left),
a 200 keeps it and records its current folder. Nothing is deleted on ``@removed`` alone.

A mail job syncs its folders on several threads at once, so the two sides of a move may be seen
in either order or at the same moment. The ids noted in a round are a :class:`PendingRemovals`
shared by those threads: each note checks, writes its row and updates the set under the set's
lock, so a removal and a presence of one id never interleave. Whatever order they come in, the
outcome is settled by the ``GET`` at the end of the round, which sees where the message is now.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.adapters.tablelimits import table_key
from shared.errors import NotFoundError

if TYPE_CHECKING:
    from shared.adapters.graph import GraphMailClient
    from shared.adapters.tables import TableEntityStore
    from shared.sync.connections import Connection
    from shared.sync.store import EmailStore

logger = logging.getLogger(__name__)

PENDING = "pendingremovals"


@dataclass(slots=True)
class Resolved:
    """What resolving a round's removals did."""

    unlinked: int = 0
    moved: int = 0
    ignored: int = 0


@dataclass(slots=True)
class PendingRemovals:
    """The ids with a removal noted and not yet settled; safe to share between threads."""

    ids: set[str]
    lock: threading.Lock = field(default_factory=threading.Lock)


class RemovalLedger:
    """Notes ``@removed`` ids during a round and settles them at its end."""

    def __init__(self, tables: TableEntityStore, emails: EmailStore, graph: GraphMailClient):
        self._tables = tables
        self._emails = emails
        self._graph = graph

    def pending(self, connection: Connection) -> PendingRemovals:
        """Return the ids of removals noted and not yet settled for a connection."""
        rows = self._tables.list_partition(PENDING, connection.key)
        return PendingRemovals({str(row["itemId"]) for row in rows})

    def note_removed(self, connection: Connection, item_id: str, pending: PendingRemovals) -> None:
        """Note that a folder reported an item as removed."""
        with pending.lock:
            if item_id in pending.ids:
                return
            row = {"PartitionKey": connection.key, "RowKey": table_key(item_id), "itemId": item_id}
            self._tables.upsert(PENDING, row)
            pending.ids.add(item_id)

    def note_present(self, connection: Connection, item_id: str, pending: PendingRemovals) -> None:
        """Cancel a noted removal because a folder reported the item as present."""
        with pending.lock:
            if item_id not in pending.ids:
                return
            self._tables.delete(PENDING, connection.key, table_key(item_id))
            pending.ids.discard(item_id)

    def resolve(self, connection: Connection, token: str) -> Resolved:
        """Settle every pending removal of a connection with a GET of the message."""
        result = Resolved()
        for row in self._tables.list_partition(PENDING, connection.key):
            item_id = str(row["itemId"])
            self._settle(connection, token, item_id, result)
            self._tables.delete(PENDING, connection.key, table_key(item_id))
        if result.unlinked or result.moved:
            extra = {"user": connection.user_id, "unlinked": result.unlinked, "moved": result.moved}
            logger.info("removals resolved", extra=extra)
        return result

    def _settle(self, connection: Connection, token: str, item_id: str, result: Resolved) -> None:
        if self._emails.item(connection.key, item_id) is None:
            result.ignored += 1
            return
        try:
            found = self._graph.get_message(token, item_id)
        except NotFoundError:
            self._emails.unlink(
                tenant_id=connection.tenant_id,
                user_id=connection.user_id,
                connection=connection.key,
                item_id=item_id,
            )
            result.unlinked += 1
            return
        folder = str(found.get("parentFolderId", ""))
        self._emails.move_item(connection.tenant_id, connection.key, item_id, folder)
        result.moved += 1
