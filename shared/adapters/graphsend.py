"""Microsoft Graph adapter for sending: drafts, attachments, upload sessions, send, settings.

Every call but the upload ranges goes through :meth:`GraphMailClient.call`, so it asks for
immutable ids and shares its throttling and error translation. Upload ranges go to the session's
pre-authenticated ``uploadUrl`` without an Authorization header, in order, each at most
:data:`CHUNK_BYTES` (Graph: keep every request under 4 MB;
learn.microsoft.com/graph/outlook-large-attachments).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from shared.adapters.graph import TIMEOUT_S, retry_after
from shared.errors import GraphRequestError, ThrottledError, TransientError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.adapters.graph import GraphMailClient

MB = 1024 * 1024
CHUNK_BYTES = 2 * MB
"""Bytes per upload range: a multiple of 320 KiB, well under the 4 MB request limit."""
DEFAULT_RETRY_S = 5.0
"""Wait before a throttled upload range is tried again when Graph names none."""


class GraphSendClient:
    """Creates, fills, sends and deletes drafts on behalf of one user at a time."""

    def __init__(
        self, transport: GraphMailClient, *, session: requests.Session | None = None
    ) -> None:
        self._graph = transport
        self._base = transport.base_url
        self._session = session or requests.Session()

    def _message_url(self, message_id: str, suffix: str = "") -> str:
        return f"{self._base}/me/messages/{quote(message_id, safe='')}{suffix}"

    def create_draft(self, token: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """Create a draft in Drafts; return it with its immutable id and internetMessageId."""
        return self._graph.call("POST", f"{self._base}/me/messages", token, body=message)

    def find_draft(self, token: str, header: str, value: str) -> dict[str, Any] | None:
        """Return the draft in Drafts carrying the internet header ``header: value``, or None."""
        select = "id,internetMessageId,internetMessageHeaders"
        url: str | None = f"{self._base}/me/mailFolders/drafts/messages?$top=50&$select={select}"
        while url:
            page = self._graph.call("GET", url, token)
            for message in page.get("value") or []:
                headers = message.get("internetMessageHeaders") or []
                if any(h.get("name") == header and h.get("value") == value for h in headers):
                    return dict(message)
            url = page.get("@odata.nextLink")
        return None

    def create_reply(
        self, token: str, original_id: str, message: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create a reply draft in the original's thread, with ``message``'s properties."""
        url = self._message_url(original_id, "/createReply")
        return self._graph.call("POST", url, token, body={"message": message})

    def get_message(self, token: str, message_id: str) -> dict[str, Any]:
        """Return where a message stands: its folder, draft flag and internetMessageId.

        Raises:
            NotFoundError: when the message does not exist.
        """
        url = self._message_url(message_id, "?$select=id,isDraft,parentFolderId,internetMessageId")
        return self._graph.call("GET", url, token)

    def attachment_count(self, token: str, message_id: str) -> int:
        """Return how many attachments a draft holds already."""
        body = self._graph.call("GET", self._message_url(message_id, "/attachments"), token)
        return len(body.get("value") or [])

    def add_inline_attachment(
        self, token: str, message_id: str, name: str, content_type: str, content: bytes
    ) -> None:
        """Attach a file under 3 MB in one request."""
        body = inline_attachment_body(name, content_type, content)
        self._graph.call("POST", self._message_url(message_id, "/attachments"), token, body=body)

    def upload_attachment(
        self, token: str, message_id: str, name: str, content_type: str, content: bytes
    ) -> None:
        """Attach a file of 3 MB or more through an upload session, range by range.

        Raises:
            GraphRequestError: when a range is refused.
            TransientError: when the upload URL cannot be reached or fails on its side.
        """
        item = {"attachmentType": "file", "name": name, "size": len(content)}
        if content_type:
            item["contentType"] = content_type
        url = self._message_url(message_id, "/attachments/createUploadSession")
        opened = self._graph.call("POST", url, token, body={"AttachmentItem": item})
        upload_url = str(opened["uploadUrl"])
        for start in range(0, len(content), CHUNK_BYTES):
            self._put_range(upload_url, content, start, min(start + CHUNK_BYTES, len(content)))

    def _put_range(self, upload_url: str, content: bytes, start: int, end: int) -> None:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {start}-{end - 1}/{len(content)}",
        }
        try:
            response = self._session.put(
                upload_url, data=content[start:end], headers=headers, timeout=TIMEOUT_S
            )
        except requests.RequestException as error:
            msg = "the upload session could not be reached"
            raise TransientError(msg) from error
        if response.status_code in (429, 503, 504):
            wait = retry_after(response)
            wait = DEFAULT_RETRY_S if wait is None else wait
            msg = f"the upload session answered {response.status_code}"
            raise ThrottledError(msg, retry_after_s=max(wait, 1.0))
        if response.status_code >= 500:
            msg = f"the upload session answered {response.status_code}"
            raise TransientError(msg)
        if not response.ok:
            msg = f"the upload session refused a range with {response.status_code}"
            raise GraphRequestError(msg, response.status_code, "uploadRangeRefused")

    def send(self, token: str, message_id: str) -> None:
        """Send a draft; Graph moves it to Sent Items under the same immutable id."""
        self._graph.call("POST", self._message_url(message_id, "/send"), token)

    def delete_message(self, token: str, message_id: str) -> None:
        """Delete a message (an orphan draft)."""
        self._graph.call("DELETE", self._message_url(message_id), token)

    def mailbox_time_zone(self, token: str) -> str:
        """Return the mailbox's time zone name (Windows or IANA), as its settings give it."""
        body = self._graph.call("GET", f"{self._base}/me/mailboxSettings", token)
        return str(body.get("timeZone") or "UTC")


def inline_attachment_body(name: str, content_type: str, content: bytes) -> dict[str, Any]:
    """Return the body of the request that attaches a file inline."""
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": content_type,
        "contentBytes": base64.b64encode(content).decode("ascii"),
    }


def request_bytes(body: Mapping[str, Any]) -> int:
    """Return how many bytes a JSON request body takes on the wire, as the client sends it."""
    return len(json.dumps(body).encode("utf-8"))
