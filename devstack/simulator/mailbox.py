"""One user's simulated mailbox: folders, messages and the change history delta queries read.

Every change (add, update, move in, move out, delete) takes the next number of a mailbox-wide
sequence. A message remembers the number of its last change; a message leaving a folder leaves a
tombstone with the number of its departure. A delta round is then "everything in the folder with a
number above the cursor", which gives Graph's semantics without storing snapshots.

Known limitations: tombstones are kept forever (Exchange forgets old sync state and answers
``syncStateNotFound``; use ``Mailbox.invalidate_sync_state`` to simulate that). Search folders,
hidden folders other than the root, and the archive mailbox are not modelled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from devstack.simulator import ids

# Well-known name -> display name of the folders every new mailbox gets under the root.
WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "archive": "Archive",
    "junkemail": "Junk Email",
}
ROOT_NAME = "msgfolderroot"
# Properties the server owns; values a caller passes for them are ignored.
SERVER_FIELDS = ("id", "parentFolderId", "changeKey", "@odata.etag", "lastModifiedDateTime")


@dataclass(slots=True)
class Folder:
    """A mail folder; ids never change, as for real mailFolders."""

    id: str
    display_name: str
    parent_id: str
    well_known: str | None = None
    is_hidden: bool = False


@dataclass(slots=True)
class StoredMessage:
    """A message and its bookkeeping; ``data`` holds the caller's Graph-shaped properties."""

    immutable_id: str
    rest_id: str
    folder_id: str
    data: dict[str, Any]
    change_key: str
    created: str
    modified: str
    seq: int


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The trace a message leaves in a folder it was deleted or moved from."""

    folder_id: str
    immutable_id: str
    rest_id: str
    seq: int


class Mailbox:
    """Folders and messages of one user; the caller holds the simulator lock."""

    def __init__(self) -> None:
        self._seq = 0
        self.generation = 0
        # Some delta responses list one message twice (microsoft-graph-docs#3611).
        self.repeat_in_delta = False
        self._folders: dict[str, Folder] = {}
        self._messages: dict[str, StoredMessage] = {}
        self._rest_index: dict[str, str] = {}
        self._tombstones: list[Tombstone] = []
        # The root's parent is the mailbox's non-IPM subtree, which Graph never shows.
        self.root = self._new_folder("Top of Information Store", ids.folder_id(), ROOT_NAME)
        for name, display in WELL_KNOWN_FOLDERS.items():
            self._new_folder(display, self.root.id, name)

    @property
    def high_water(self) -> int:
        """Return the number of the latest change."""
        return self._seq

    def invalidate_sync_state(self) -> None:
        """Forget every delta cursor handed out so far, as Exchange does when its cache evicts."""
        self.generation += 1

    def _new_folder(self, name: str, parent: str, well_known: str | None = None) -> Folder:
        folder = Folder(ids.folder_id(), name, parent, well_known)
        self._folders[folder.id] = folder
        return folder

    def resolve_folder(self, key: str) -> Folder:
        """Return the folder named by a well-known name, an id or a display name.

        Raises:
            KeyError: No folder matches ``key``.
        """
        if key in self._folders:
            return self._folders[key]
        found = self.graph_folder(key)
        folded = key.casefold()
        found = found or next(
            (f for f in self._folders.values() if f.display_name.casefold() == folded), None
        )
        if found is not None:
            return found
        message = f"no mail folder {key!r}"
        raise KeyError(message)

    def graph_folder(self, key: str) -> Folder | None:
        """Return the folder a Graph URL names by id or well-known name (not display name)."""
        if key in self._folders:
            return self._folders[key]
        folded = key.casefold()
        return next((f for f in self._folders.values() if f.well_known == folded), None)

    def create_folder(self, display_name: str, parent: str | None = None) -> Folder:
        """Create a folder under ``parent`` (the root when None) and return it."""
        parent_folder = self.root if parent is None else self.resolve_folder(parent)
        return self._new_folder(display_name, parent_folder.id)

    def child_folders(self, folder_id: str) -> list[Folder]:
        """Return the direct children of ``folder_id`` in creation order."""
        return [f for f in self._folders.values() if f.parent_id == folder_id]

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add_message(self, folder: str, data: dict[str, Any], now: str) -> StoredMessage:
        """Store a copy of ``data`` in ``folder`` and return the new message."""
        target = self.resolve_folder(folder)
        body = {k: copy.deepcopy(v) for k, v in data.items() if k not in SERVER_FIELDS}
        created = str(body.pop("createdDateTime", None) or body.get("receivedDateTime") or now)
        message = StoredMessage(
            immutable_id=ids.immutable_message_id(),
            rest_id=ids.rest_message_id(),
            folder_id=target.id,
            data=body,
            change_key=ids.change_key(),
            created=created,
            modified=now,
            seq=self._next_seq(),
        )
        self._messages[message.immutable_id] = message
        self._rest_index[message.rest_id] = message.immutable_id
        return message

    def find_message(self, message_id: str) -> StoredMessage | None:
        """Return the message with this immutable or current REST id, or None."""
        immutable = self._rest_index.get(message_id, message_id)
        return self._messages.get(immutable)

    def get_message(self, message_id: str) -> StoredMessage:
        """Return the message with this id; raise KeyError when there is none."""
        message = self.find_message(message_id)
        if message is None:
            text = f"no message {message_id!r}"
            raise KeyError(text)
        return message

    def update_message(self, message_id: str, changes: dict[str, Any], now: str) -> StoredMessage:
        """Apply property ``changes`` to a message, as a PATCH would."""
        message = self.get_message(message_id)
        message.data.update(
            {k: copy.deepcopy(v) for k, v in changes.items() if k not in SERVER_FIELDS}
        )
        self._touch(message, now)
        return message

    def move_message(self, message_id: str, folder: str, now: str) -> StoredMessage:
        """Move a message to ``folder``; its REST id changes, its immutable id does not."""
        message = self.get_message(message_id)
        target = self.resolve_folder(folder)
        if target.id == message.folder_id:
            return message
        self._leave_folder(message)
        del self._rest_index[message.rest_id]
        message.rest_id = ids.rest_message_id()
        self._rest_index[message.rest_id] = message.immutable_id
        message.folder_id = target.id
        self._touch(message, now)
        return message

    def delete_message(self, message_id: str) -> None:
        """Remove a message for good (a hard delete, not a move to Deleted Items)."""
        message = self.get_message(message_id)
        self._leave_folder(message)
        del self._rest_index[message.rest_id]
        del self._messages[message.immutable_id]

    def _leave_folder(self, message: StoredMessage) -> None:
        stone = Tombstone(
            message.folder_id, message.immutable_id, message.rest_id, self._next_seq()
        )
        self._tombstones.append(stone)

    def _touch(self, message: StoredMessage, now: str) -> None:
        message.change_key = ids.change_key()
        message.modified = now
        message.seq = self._next_seq()

    def messages_in(self, folder_id: str) -> list[StoredMessage]:
        """Return the messages currently in ``folder_id``, oldest change first."""
        found = [m for m in self._messages.values() if m.folder_id == folder_id]
        return sorted(found, key=lambda m: m.seq)

    def changes(self, folder_id: str, after: int, upto: int) -> list[StoredMessage | Tombstone]:
        """Return the messages and tombstones of a folder with ``after < seq <= upto``, in order."""
        live: list[StoredMessage | Tombstone] = [
            m for m in self.messages_in(folder_id) if after < m.seq <= upto
        ]
        gone = [t for t in self._tombstones if t.folder_id == folder_id and after < t.seq <= upto]
        return sorted([*live, *gone], key=lambda item: item.seq)

    def counts(self, folder_id: str) -> tuple[int, int]:
        """Return ``(total, unread)`` message counts of ``folder_id``."""
        inside = self.messages_in(folder_id)
        return len(inside), sum(1 for m in inside if not m.data.get("isRead", False))
