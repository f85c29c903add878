"""Render stored messages and folders as Graph v1.0 JSON."""

from __future__ import annotations

import copy
import hashlib
import html
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.simulator.mailbox import Folder, StoredMessage, Tombstone

# Returned only when asked for with $select, as Graph does.
SELECT_ONLY = frozenset({"internetMessageHeaders", "uniqueBody"})
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
PREVIEW_LENGTH = 255


def _preview(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    content = str(body.get("content", ""))
    if str(body.get("contentType", "text")).lower() == "html":
        content = html.unescape(_TAGS.sub(" ", content))
    return _SPACES.sub(" ", content).strip()[:PREVIEW_LENGTH]


def _conversation_id(subject: str) -> str:
    digest = hashlib.sha256(subject.removeprefix("RE: ").encode()).hexdigest()[:32]
    return f"AAQkA{digest}="


def _defaults(message: StoredMessage) -> dict[str, Any]:
    data = message.data
    received = data.get("receivedDateTime") or message.created
    return {
        "createdDateTime": message.created,
        "lastModifiedDateTime": message.modified,
        "changeKey": message.change_key,
        "categories": [],
        "receivedDateTime": received,
        "sentDateTime": data.get("sentDateTime") or received,
        "hasAttachments": False,
        "internetMessageId": f"<{message.immutable_id[6:30]}@simulator.invalid>",
        "subject": "",
        "bodyPreview": _preview(data.get("body")),
        "importance": "normal",
        "parentFolderId": message.folder_id,
        "conversationId": _conversation_id(str(data.get("subject", ""))),
        "isReadReceiptRequested": False,
        "isRead": False,
        "isDraft": False,
        "inferenceClassification": "focused",
        "body": {"contentType": "text", "content": ""},
        "sender": data.get("from"),
        "from": data.get("sender"),
        "toRecipients": [],
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
    }


def render_message(
    message: StoredMessage, *, immutable: bool, select: frozenset[str] | None = None
) -> dict[str, Any]:
    """Return the Graph JSON of ``message``.

    Args:
        message: The stored message.
        immutable: Whether the request carried ``Prefer: IdType="ImmutableId"``.
        select: The ``$select`` property names, or None for the default set.
    """
    full = _defaults(message)
    full.update(copy.deepcopy(message.data))
    full["parentFolderId"] = message.folder_id
    full["changeKey"] = message.change_key
    full["lastModifiedDateTime"] = message.modified
    shown = {
        k: v
        for k, v in full.items()
        if (k in select if select is not None else k not in SELECT_ONLY)
    }
    message_id = message.immutable_id if immutable else message.rest_id
    return {
        "@odata.type": "#microsoft.graph.message",
        "@odata.etag": f'W/"{message.change_key}"',
        "id": message_id,
        **shown,
    }


def render_removed(stone: Tombstone, *, immutable: bool) -> dict[str, Any]:
    """Return the ``@removed`` entry a delta round gives for a tombstone."""
    return {
        "@odata.type": "#microsoft.graph.message",
        "id": stone.immutable_id if immutable else stone.rest_id,
        "@removed": {"reason": "deleted"},
    }


def render_folder(folder: Folder, *, children: int, total: int, unread: int) -> dict[str, Any]:
    """Return the Graph JSON of a mail folder."""
    return {
        "id": folder.id,
        "displayName": folder.display_name,
        "parentFolderId": folder.parent_id,
        "childFolderCount": children,
        "unreadItemCount": unread,
        "totalItemCount": total,
        "isHidden": folder.is_hidden,
    }
