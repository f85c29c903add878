"""The folders a mail connection syncs until its user chooses: Inbox and Sent Items.

Consent looks them up right after the grant is stored; when Graph fails that lookup, the
connection is stored without folders and its first sync job looks them up instead
(:meth:`shared.sync.mail.MailSyncService._sync`), so a connection never syncs nothing silently.
"""

from __future__ import annotations

from typing import Any, Protocol

from shared.sync.connections import Folder

DEFAULT_FOLDERS = ("inbox", "sentitems")
"""Well-known names of the folders a new connection syncs (Graph ``mailFolders`` names)."""


class FolderLookup(Protocol):
    """Reads one mail folder by id or well-known name: the Graph adapter, or a fake."""

    def get_folder(self, token: str, folder: str) -> dict[str, Any]:
        """Return one mail folder."""
        ...


def look_up_default_folders(graph: FolderLookup, token: str) -> list[Folder]:
    """Return the default folders with the ids the user's mailbox gives them.

    Raises:
        ThrottledError: when Graph keeps throttling the lookup.
        TransientError: when Graph cannot be reached.
    """
    folders = []
    for name in DEFAULT_FOLDERS:
        found = graph.get_folder(token, name)
        folders.append(Folder(str(found["id"]), str(found.get("displayName", name))))
    return folders
