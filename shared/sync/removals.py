"""Removals seen in delta rounds, resolved only when a connection's round is complete.

A message moved between folders shows up as ``@removed`` in the folder it left and as present
in the folder it entered, in either order (BR-02). So a removal is first noted in the
``pendingremovals`` table; seeing the same id present later in the round cancels it; and when
the round has walked every folder, each removal still pending is checked with a ``GET`` of the
message: a 404 unlinks it from this mailbox (deleting the email when no other holder is left),
a 200 keeps it and records its current folder. Nothing is deleted on ``@removed`` alone. A
message found in a folder the connection does not sync (Deleted Items, an archive) stays noted
and is looked at again in later rounds, so emptying that folder later unlinks it too; moving it
back into a synced folder cancels the note as any presence does.

A round begun without a link (a folder's first, or one after a reset) ends by noting as removed
the folder's stored items it did not save again (:meth:`RemovalLedger.note_unseen`), so mail
deleted while the cursor was lost goes, and mail moved meanwhile is found by the ``GET``.

Known limitations: at most :data:`WATCH_PER_ROUND` messages in folders the connection does not
sync are looked at per complete round, so with many of them a deletion there is noticed only
after several rounds; every job reads all the noted rows of its connection.

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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.errors import NotFoundError
from shared.sync.jobs import instant

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.adapters.graph import GraphMailClient
    from shared.adapters.tables import TableEntityStore
    from shared.sync.connections import Connection
    from shared.sync.store import EmailStore

logger = logging.getLogger(__name__)

PENDING = "pendingremovals"
WATCH_PER_ROUND = 50
"""Items in folders the connection does not sync that one complete round looks at again."""


@dataclass(slots=True)
class Resolved:
    """What resolving a round's removals did."""

    unlinked: int = 0
    moved: int = 0
    ignored: int = 0
    watched: int = 0
    """Items found in a folder the connection does not sync, looked at again later."""


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
            self._tables.upsert(PENDING, _keys(connection, item_id))
            pending.ids.add(item_id)

    def note_present(self, connection: Connection, item_id: str, pending: PendingRemovals) -> None:
        """Cancel a noted removal because a folder reported the item as present."""
        with pending.lock:
            if item_id not in pending.ids:
                return
            self._tables.delete(PENDING, connection.key, table_key(item_id))
            pending.ids.discard(item_id)

    def note_unseen(
        self,
        connection: Connection,
        folder_id: str,
        pending: PendingRemovals,
        *,
        started: datetime,
        since: datetime,
    ) -> int:
        """Note as removed what a folder's full round did not see again; return how many.

        A round begun without a link lists every message of the folder received since
        ``since`` and saves each kept one again, so an item stored in the folder, received
        since then and not saved since ``started`` was deleted or moved while the cursor was
        lost. Each is checked with a GET at the end of the connection's round, like a removal,
        so mail that moved to another folder is kept.
        """
        unseen = [
            str(item["itemId"])
            for item in self._emails.folder_items(connection.key, folder_id)
            if _unseen(item, started, since)
        ]
        for item_id in unseen:
            self.note_removed(connection, item_id, pending)
        return len(unseen)

    def resolve(self, connection: Connection, token: str) -> Resolved:
        """Settle the connection's pending removals with a GET of each message.

        Items last found in a folder the connection does not sync are looked at again in
        later rounds, the :data:`WATCH_PER_ROUND` checked longest ago first.
        """
        result = Resolved()
        rows = list(self._tables.list_partition(PENDING, connection.key))
        watched = sorted((r for r in rows if r.get("watchedAt")), key=lambda r: r["watchedAt"])
        due = [r for r in rows if not r.get("watchedAt")] + watched[:WATCH_PER_ROUND]
        synced = {folder.folder_id for folder in connection.folders}
        for row in due:
            item_id = str(row["itemId"])
            folder = self._settle(connection, token, item_id, result)
            if folder is not None and folder not in synced:
                result.watched += 1
                now = datetime.now(UTC).isoformat(timespec="milliseconds")
                self._tables.upsert(PENDING, {**_keys(connection, item_id), "watchedAt": now})
                continue
            self._tables.delete(PENDING, connection.key, table_key(item_id))
        if result.unlinked or result.moved:
            extra = {"user": connection.user_id, "unlinked": result.unlinked, "moved": result.moved}
            logger.info("removals resolved", extra=extra | {"watched": result.watched})
        return result

    def _settle(
        self, connection: Connection, token: str, item_id: str, result: Resolved
    ) -> str | None:
        """Unlink a message Graph no longer has, or record its folder; return that folder."""
        if self._emails.item(connection.key, item_id) is None:
            result.ignored += 1
            return None
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
            return None
        folder = str(found.get("parentFolderId", ""))
        self._emails.move_item(connection.tenant_id, connection.key, item_id, folder)
        result.moved += 1
        return folder


def _keys(connection: Connection, item_id: str) -> dict[str, str]:
    return {"PartitionKey": connection.key, "RowKey": table_key(item_id), "itemId": item_id}


def _unseen(item: Mapping[str, Any], started: datetime, since: datetime) -> bool:
    """Tell whether a full round that began at ``started`` should have saved a stored item.

    An item stored before items kept these times is always looked at.
    """
    saved, received = item.get("savedAt"), item.get("receivedAt")
    if saved and instant(saved) >= started:
        return False
    return not received or instant(received) >= since
