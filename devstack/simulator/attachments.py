"""Microsoft Graph v1.0 file attachments of drafts: inline, and through upload sessions.

``POST /me/messages/{id}/attachments`` adds a file under 3 MB in one request;
``POST /me/messages/{id}/attachments/createUploadSession`` opens a session for a file of 3 MB
to 150 MB (a smaller one is refused with ``ErrorAttachmentSizeShouldNotBeLessThanMinimumSize``,
microsoft-graph-docs#9589), whose pre-authenticated ``uploadUrl`` (served under ``/upload``)
takes ``PUT`` byte ranges in order, each within Graph's 4 MB request limit; the last answers 201
with the attachment's ``Location``. ``GET /me/messages/{id}/attachments`` lists them.

Known limitations: upload sessions never expire and cannot be cancelled; only file attachments
(not item or reference attachments) exist.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from devstack.simulator import ids
from devstack.simulator.graphhttp import graph_error
from devstack.simulator.sending import (
    MB,
    WRITE_SCOPES,
    draft_of,
    not_found,
    owner,
    refused,
    too_large,
)
from devstack.simulator.web import Service, json_body, json_response

if TYPE_CHECKING:
    from devstack.simulator.mailbox import Mailbox, StoredMessage
    from devstack.simulator.state import SimState
    from devstack.simulator.web import Call

MIN_UPLOAD_SESSION_BYTES = 3 * MB
"""Upload sessions refuse smaller files; inline attachments must be smaller than this."""
MAX_ATTACHMENT_BYTES = 150 * MB
UPLOAD_PREFIX = "/upload/"
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass(slots=True)
class UploadSession:
    """An open upload session: where the bytes go and how many have arrived."""

    owner: str
    message_id: str
    name: str
    content_type: str
    size: int
    received: bytearray = field(default_factory=bytearray)


def _decoded(call: Call, text: Any) -> bytes | Response:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        message = "The attachment's contentBytes are not valid base64."
        return graph_error(call, 400, "ErrorInvalidRequest", message)


def add_attachment(call: Call) -> Response:
    """Serve ``POST /me/messages/{id}/attachments`` for a file attachment under 3 MB."""
    stopped = refused(call, WRITE_SCOPES)
    if stopped is not None:
        return stopped
    body = json_body(call)
    content = _decoded(call, body.get("contentBytes", ""))
    if isinstance(content, Response):
        return content
    if len(content) >= MIN_UPLOAD_SESSION_BYTES:
        message = "Attachments of 3 MB or more must be uploaded through an upload session."
        return graph_error(call, 413, "ErrorAttachmentSizeTooLarge", message)
    with call.state.lock:
        mailbox = call.state.mailboxes[owner(call).oid]
        draft = draft_of(call, mailbox)
        if isinstance(draft, Response):
            return draft
        name, kind = str(body.get("name", "")), str(body.get("contentType", ""))
        attachment = _attach(call.state, mailbox, draft, (name, kind, bytes(content)))
    return json_response(_attachment_json(attachment, with_bytes=True), 201)


def _attach(
    state: SimState, mailbox: Mailbox, draft: StoredMessage, file: tuple[str, str, bytes]
) -> dict[str, Any]:
    name, kind, content = file
    attachment = {
        "id": ids.change_key(),
        "name": name,
        "contentType": kind or "application/octet-stream",
        "size": len(content),
        "content": content,
    }
    state.sending.attachments.setdefault(draft.immutable_id, []).append(attachment)
    mailbox.update_message(draft.immutable_id, {"hasAttachments": True}, state.clock.iso())
    return attachment


def _attachment_json(attachment: dict[str, Any], *, with_bytes: bool) -> dict[str, Any]:
    shown = {k: v for k, v in attachment.items() if k != "content"}
    if with_bytes:
        shown["contentBytes"] = base64.b64encode(attachment["content"]).decode("ascii")
    return {"@odata.type": "#microsoft.graph.fileAttachment", **shown}


def create_upload_session(call: Call) -> Response:
    """Serve ``POST /me/messages/{id}/attachments/createUploadSession`` (3 MB to 150 MB)."""
    stopped = refused(call, WRITE_SCOPES)
    if stopped is not None:
        return stopped
    item = json_body(call).get("AttachmentItem")
    size = item.get("size") if isinstance(item, dict) else None
    if not isinstance(item, dict) or not isinstance(size, int) or size > MAX_ATTACHMENT_BYTES:
        message = "AttachmentItem needs a name and a size of at most 150 MB."
        return graph_error(call, 400, "ErrorInvalidRequest", message)
    if size < MIN_UPLOAD_SESSION_BYTES:
        message = "Attachment size should not be less than the minimum size of 3 MB."
        return graph_error(call, 400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", message)
    user = owner(call)
    with call.state.lock:
        draft = draft_of(call, call.state.mailboxes[user.oid])
        if isinstance(draft, Response):
            return draft
        session_id = ids.opaque_token(24)
        call.state.sending.sessions[session_id] = UploadSession(
            user.oid,
            draft.immutable_id,
            str(item.get("name", "")),
            str(item.get("contentType", "")),
            size,
        )
        expires = call.state.clock.iso()
    upload_url = f"{call.state.urls.base_url}{UPLOAD_PREFIX}{quote(session_id, safe='')}"
    body = {"uploadUrl": upload_url, "expirationDateTime": expires, "nextExpectedRanges": ["0-"]}
    return json_response(body, 201)


def upload_range(call: Call) -> Response:
    """Serve a ``PUT`` of one byte range to an upload session's URL (no Authorization)."""
    stopped = too_large(call)
    if stopped is not None:
        return stopped
    if call.request.headers.get("Authorization"):
        message = "The upload URL is pre-authenticated; send no Authorization header."
        return graph_error(call, 401, "InvalidAuthenticationToken", message)
    matched = _RANGE.fullmatch(call.request.headers.get("Content-Range", ""))
    chunk = call.request.get_data()
    with call.state.lock:
        session = call.state.sending.sessions.get(call.args["session_id"])
        if session is None:
            return not_found(call)
        problem = _range_problem(session, matched, len(chunk))
        if problem is not None:
            return graph_error(call, 416, "InvalidRange", problem)
        session.received.extend(chunk)
        if len(session.received) < session.size:
            expected = [f"{len(session.received)}-"]
            return json_response({"nextExpectedRanges": expected}, 200)
        return _finish_upload(call, session)


def _range_problem(
    session: UploadSession, matched: re.Match[str] | None, length: int
) -> str | None:
    if matched is None:
        return "Content-Range must be 'bytes start-end/total'."
    start, end, total = (int(part) for part in matched.groups())
    if total != session.size:
        return "The total in Content-Range differs from the session's size."
    if start != len(session.received):
        return f"The next expected range starts at {len(session.received)}."
    if end < start or end >= total or end - start + 1 != length:
        return "The range does not match the body's length."
    return None


def _finish_upload(call: Call, session: UploadSession) -> Response:
    del call.state.sending.sessions[call.args["session_id"]]
    mailbox = call.state.mailboxes[session.owner]
    draft = mailbox.find_message(session.message_id)
    if draft is None:
        return not_found(call)
    content = bytes(session.received)
    attachment = _attach(call.state, mailbox, draft, (session.name, session.content_type, content))
    location = (
        f"{call.state.urls.graph_url}/users('{session.owner}')/messages"
        f"('{quote(session.message_id, safe='')}')/attachments('{attachment['id']}')"
    )
    return Response(status=201, headers={"Location": location})


def list_attachments(call: Call) -> Response:
    """Serve ``GET /me/messages/{id}/attachments`` (without their bytes)."""
    with call.state.lock:
        mailbox = call.state.mailboxes[owner(call).oid]
        found = mailbox.find_message(call.args["message_id"])
        if found is None:
            return not_found(call)
        stored = call.state.sending.attachments.get(found.immutable_id, [])
        value = [_attachment_json(a, with_bytes=False) for a in stored]
    return json_response({"value": value})


def upload_service() -> Service:
    """Return the pre-authenticated upload URLs of upload sessions, under ``/upload``."""
    rule = Rule(f"{UPLOAD_PREFIX}<session_id>", endpoint="upload_range", methods=["PUT"])
    return Service(
        name="upload",
        url_map=Map([rule], strict_slashes=False),
        handlers={"upload_range": upload_range},
        prepare=lambda call: None,
        error=graph_error,
    )


def attachments(state: SimState, upn: str, message_id: str) -> list[dict[str, Any]]:
    """Return a message's attachments with their bytes (``content``), for tests."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        found = mailbox.get_message(message_id)
        return copy.deepcopy(state.sending.attachments.get(found.immutable_id, []))


ROUTES: list[tuple[str, str, str, Any]] = [
    (
        "/messages/<path:message_id>/attachments/createUploadSession",
        "upload_session",
        "POST",
        create_upload_session,
    ),
    ("/messages/<path:message_id>/attachments", "add_attachment", "POST", add_attachment),
    ("/messages/<path:message_id>/attachments", "list_attachments", "GET", list_attachments),
]
"""(suffix, endpoint, method, handler) of each attachment route under ``/me`` and
``/users/{id}``."""
